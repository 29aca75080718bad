"""Every AWS action each process kind makes, and on which queue: the least privilege its IAM role gets.

One fact, kept beside the code that makes the calls, and checked twice by the suite
(tests/integration/test_deploy_iam.py): against the calls the code actually makes (recorded
while representative paths run against a real moto SQS server), and against the
task roles in ops/aws/gift-a-voucher.yaml. A role that lacks one of these, or has
one not listed, fails the suite.

Process kinds are the ECS services of ops/aws/gift-a-voucher.yaml:

- web: the public API, /readyz and /metrics, and the admin without the DLQ tools
  (ADMIN_DLQ_TOOLS=false). Publishing goes through kombu, whose channel looks up
  every predefined queue's URL when it opens (config/sqs_transport.py) and reads
  the target queue's size when Celery declares it before a publish; /readyz looks up
  every queue's URL; /metrics and the admin's operations page read every queue's depth.
- worker: consumes the gift and maintenance queues (kombu: receive, delete on ack,
  read a queue's size when declaring it and its RedrivePolicy before deleting a
  rejected message, change visibility to put back a message whose pool child was
  lost or that a stopping worker had not run); retries and the sweeper send to the
  gift queue, the failure handler sends to the DLQ; the monitor reads every queue's depth.
- beat: publishes the periodic tasks, all routed to the maintenance queue.
- admin: the operators' service (the admin with its DLQ tools, the operations page,
  and one-off `manage.py dlq`, `migrate`, `createsuperuser` tasks): everything web
  does, plus reading, giving back and deleting dead letters and sending them back
  to the gift queue (gifting/dead_letters.py).

Actions are IAM's `sqs:` actions without the prefix; queues are core.sqs's queue names. IAM has no
action of its own for a batch call: DeleteMessageBatch is allowed by sqs:DeleteMessage, and so on
(IAM_ACTION_OF_OPERATION).
"""

from core.sqs import GIFT_DLQ, GIFT_QUEUE, MAINTENANCE_QUEUE

ALL = (GIFT_QUEUE, GIFT_DLQ, MAINTENANCE_QUEUE)

# The SQS API operations that IAM authorizes through another operation's action.
IAM_ACTION_OF_OPERATION = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _on(action: str, *queues: str) -> set[tuple[str, str]]:
    return {(action, queue) for queue in queues}


WEB: frozenset[tuple[str, str]] = frozenset(
    _on("GetQueueUrl", *ALL) | _on("GetQueueAttributes", *ALL) | _on("SendMessage", GIFT_QUEUE)
)

WORKER: frozenset[tuple[str, str]] = frozenset(
    _on("GetQueueUrl", *ALL)
    | _on("GetQueueAttributes", *ALL)
    | _on("ReceiveMessage", GIFT_QUEUE, MAINTENANCE_QUEUE)
    | _on("DeleteMessage", GIFT_QUEUE, MAINTENANCE_QUEUE)
    | _on("ChangeMessageVisibility", GIFT_QUEUE, MAINTENANCE_QUEUE)
    | _on("SendMessage", GIFT_QUEUE, GIFT_DLQ)
)

BEAT: frozenset[tuple[str, str]] = frozenset(
    _on("GetQueueUrl", *ALL) | _on("GetQueueAttributes", MAINTENANCE_QUEUE) | _on("SendMessage", MAINTENANCE_QUEUE)
)

ADMIN: frozenset[tuple[str, str]] = WEB | frozenset(
    _on("ReceiveMessage", GIFT_DLQ) | _on("DeleteMessage", GIFT_DLQ) | _on("ChangeMessageVisibility", GIFT_DLQ)
)

PROCESS_ACTIONS: dict[str, frozenset[tuple[str, str]]] = {
    "web": WEB,
    "worker": WORKER,
    "beat": BEAT,
    "admin": ADMIN,
}
