"""kombu's SQS transport, with the application's queues predefined.

kombu creates any queue it does not know on first use, with its own
attributes and no RedrivePolicy. Predefined queues stop that, but kombu wants
their URLs, and a URL's shape differs between AWS, moto and LocalStack. This
channel asks SQS for each URL (GetQueueUrl) when it opens, so queues are only
ever created by `manage.py setup_queues` and URLs are never built by hand.
"""

from functools import cached_property

from kombu.transport import SQS

from core.sqs import sqs_name


class Channel(SQS.Channel):
    @cached_property
    def predefined_queues(self) -> dict[str, dict]:
        options = self.transport_options
        credentials = {
            "region": options["region"],
            "access_key_id": options.get("access_key_id"),
            "secret_access_key": options.get("secret_access_key"),
        }
        client = self.new_sqs_client(
            region=credentials["region"],
            access_key_id=credentials["access_key_id"],
            secret_access_key=credentials["secret_access_key"],
        )
        queues = {}
        for name in options["queue_names"]:
            url = client.get_queue_url(QueueName=sqs_name(name))["QueueUrl"]
            queues[sqs_name(name)] = {"url": url, **credentials}
        return queues

    @cached_property
    def endpoint_url(self) -> str | None:
        return self.transport_options.get("endpoint_url")


class Transport(SQS.Transport):
    Channel = Channel
