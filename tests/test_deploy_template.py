"""ops/aws/gift-a-voucher.yaml: it lints (cfn-lint, checkov), and its queues are the ones setup_queues creates.

No network and no AWS account: the linters run offline, and the queues are compared
with what core/sqs.py setup_queues creates on moto for the same prefix and settings.
The IAM roles are compared with core/aws_actions.py in tests/integration/test_deploy_iam.py,
using role_grants() from here.
"""

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import boto3
from cfnlint.decode import decode
from moto import mock_aws

from core import sqs as sqs_facts

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "ops" / "aws" / "gift-a-voucher.yaml"
BIN = Path(sys.executable).parent

# Each process kind's ECS task role, by logical id.
ROLE_OF_PROCESS = {"web": "WebTaskRole", "worker": "WorkerTaskRole", "beat": "BeatTaskRole", "admin": "AdminTaskRole"}
# Each queue's logical id.
QUEUE_OF_RESOURCE = {
    "GiftQueue": sqs_facts.GIFT_QUEUE,
    "GiftDeadLetterQueue": sqs_facts.GIFT_DLQ,
    "MaintenanceQueue": sqs_facts.MAINTENANCE_QUEUE,
}
# CloudFormation's (and SQS's) defaults for attributes a queue does not set.
SQS_DEFAULTS = {"VisibilityTimeout": 30, "MessageRetentionPeriod": 345600}


@cache
def _decoded() -> dict:
    template, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return template


def load_template() -> dict:
    """The template as data; intrinsic functions are dicts ({"Ref": …}, {"Fn::GetAtt": […]}). Do not mutate."""
    return _decoded()


def _queue_of_arn(reference) -> str:
    """The application queue an `!GetAtt Queue.Arn` names."""
    logical_id, attribute = reference["Fn::GetAtt"]
    assert attribute == "Arn", reference
    return QUEUE_OF_RESOURCE[logical_id]


def role_grants(template: dict, role: str) -> frozenset[tuple[str, str]]:
    """The (action, queue) pairs a task role's inline policies allow; any non-SQS grant shows up as itself."""
    grants = set()
    for policy in template["Resources"][role]["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow", statement
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for action in actions:
                for resource in resources:
                    if action.startswith("sqs:") and isinstance(resource, dict) and "Fn::GetAtt" in resource:
                        grants.add((action.removeprefix("sqs:"), _queue_of_arn(resource)))
                    else:
                        grants.add((action, json.dumps(resource, sort_keys=True)))
    return frozenset(grants)


def _resolve(value, parameters: dict):
    """A template value with Ref (to a parameter) and Sub (of parameters) replaced by the parameters' values."""
    if isinstance(value, dict) and "Ref" in value:
        return parameters[value["Ref"]]
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        for name, parameter in parameters.items():
            text = text.replace("${" + name + "}", str(parameter))
        return text
    return value


def template_queues(prefix: str) -> dict[str, dict]:
    """SQS name → the attributes the template gives that queue, for a stack deployed with `prefix`."""
    template = load_template()
    parameters = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    parameters["QueuePrefix"] = prefix
    queues = {}
    for logical_id in QUEUE_OF_RESOURCE:
        properties = template["Resources"][logical_id]["Properties"]
        attributes = {
            key: int(_resolve(properties.get(key, default), parameters)) for key, default in SQS_DEFAULTS.items()
        }
        attributes["SqsManagedSseEnabled"] = properties.get("SqsManagedSseEnabled") is True
        if "RedrivePolicy" in properties:
            policy = properties["RedrivePolicy"]
            target = template["Resources"][policy["deadLetterTargetArn"]["Fn::GetAtt"][0]]["Properties"]
            attributes["RedrivePolicy"] = {
                "target": _resolve(target["QueueName"], parameters),
                "maxReceiveCount": int(_resolve(policy["maxReceiveCount"], parameters)),
            }
        queues[_resolve(properties["QueueName"], parameters)] = attributes
    return queues


def setup_queues_result() -> dict[str, dict]:
    """SQS name → the same attributes, as core/sqs.py setup_queues creates the queues (on moto, in process)."""
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        queues = {}
        for name, url in sqs_facts.setup_queues(client).items():
            found = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            attributes = {key: int(found[key]) for key in SQS_DEFAULTS}
            attributes["SqsManagedSseEnabled"] = found.get("SqsManagedSseEnabled") == "true"
            if "RedrivePolicy" in found:
                policy = json.loads(found["RedrivePolicy"])
                attributes["RedrivePolicy"] = {
                    "target": policy["deadLetterTargetArn"].rsplit(":", 1)[-1],
                    "maxReceiveCount": int(policy["maxReceiveCount"]),
                }
            queues[name] = attributes
        return queues


def test_the_template_creates_the_queues_setup_queues_creates(settings):
    template = load_template()
    settings.SQS_QUEUE_PREFIX = "prod-"
    settings.SQS_VISIBILITY_TIMEOUT = template["Parameters"]["SqsVisibilityTimeout"]["Default"]
    settings.SQS_MAX_RECEIVE_COUNT = template["Parameters"]["SqsMaxReceiveCount"]["Default"]

    created = setup_queues_result()

    assert set(created) == {"prod-gift-delivery", "prod-gift-delivery-dlq", "prod-gift-maintenance"}
    assert template_queues("prod-") == created
    assert all(queue["SqsManagedSseEnabled"] for queue in created.values())


def test_every_process_gets_the_queue_settings_the_queues_were_made_with():
    """The processes' SQS_* settings come from the same parameters as the queues' attributes."""
    template = load_template()
    for task in ("WebTask", "AdminTask", "WorkerTask", "BeatTask"):
        (container,) = template["Resources"][task]["Properties"]["ContainerDefinitions"]
        environment = {variable["Name"]: variable["Value"] for variable in container["Environment"]}
        assert environment["SQS_QUEUE_PREFIX"] == {"Ref": "QueuePrefix"}, task
        assert environment["SQS_VISIBILITY_TIMEOUT"] == {"Ref": "SqsVisibilityTimeout"}, task
        assert environment["SQS_MAX_RECEIVE_COUNT"] == {"Ref": "SqsMaxReceiveCount"}, task
        assert environment["SQS_ENDPOINT_URL"] == "", task  # real AWS, through the task role


def test_secrets_are_referenced_by_name_never_by_value():
    template = load_template()
    needed = {"DJANGO_SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_URL"}
    for task in ("WebTask", "AdminTask", "WorkerTask", "BeatTask"):
        (container,) = template["Resources"][task]["Properties"]["ContainerDefinitions"]
        secrets = {secret["Name"]: secret["ValueFrom"] for secret in container["Secrets"]}
        assert needed <= set(secrets), task
        for name, reference in secrets.items():
            assert reference == {"Fn::Sub": f"/gift-a-voucher/${{EnvironmentName}}/{name}"}, (task, name)
        assert not needed & {variable["Name"] for variable in container["Environment"]}, task


def test_exactly_one_beat_even_while_deploying():
    beat = load_template()["Resources"]["BeatService"]["Properties"]
    assert beat["DesiredCount"] == 1
    assert beat["DeploymentConfiguration"]["MaximumPercent"] == 100
    scaled = {
        resource["Properties"]["ResourceId"]["Fn::Sub"]
        for resource in load_template()["Resources"].values()
        if resource["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
    }
    assert scaled == {"service/${Cluster}/${WebService.Name}", "service/${Cluster}/${WorkerService.Name}"}


def _run(*command: str) -> subprocess.CompletedProcess:
    # No network at test time: checkov is told not to download anything, and not to look for updates.
    environment = {**os.environ, "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false", "BC_SKIP_MAPPING": "TRUE"}
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)


def test_cfn_lint_passes():
    result = _run(str(BIN / "cfn-lint"), str(TEMPLATE.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_and_every_suppression_says_why():
    result = _run(
        str(BIN / "checkov"), "-f", str(TEMPLATE.relative_to(ROOT)), "--framework", "cloudformation",
        "--skip-policy-download", "--no-guide", "--compact", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for line in TEMPLATE.read_text().splitlines():
        if "checkov:skip=" in line:
            check, _, reason = line.split("checkov:skip=", 1)[1].partition(":")
            assert len(reason.strip()) > 20, f"{check} is suppressed without a reason"
