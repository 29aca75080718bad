"""The accept path in one process: CPU per request, and where it goes (issue 11, docs/benchmarks.md).

    .venv/bin/python bench/profile_accept.py [--requests 500] [--profiler none|pyinstrument] [--sqs moto]
    .venv/bin/python bench/profile_accept.py --publish background   # the thread as in production

Starts the stack of bench/stack.py without its worker (PostgreSQL, Redis, SQS; its web stays idle),
then sends --requests serial POST /api/v1/gifts/ from one sender through Django's test client in
this process (WARM_UP first, not counted), and prints wall and CPU milliseconds per request, CPU
read with time.process_time (every thread of this process, the publisher's included). With
`--publish inline` (the default) the SQS send and the `queued` event run in the request's thread,
so that a profile sees them; `--profiler pyinstrument` writes its tree to var/profile-accept.txt.
"""

import argparse
import sys
import time
import uuid

from stack import ROOT, Stack, add_stack_arguments, say

WARM_UP = 50
REPORT = ROOT / "var" / "profile-accept.txt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--profiler", choices=("none", "pyinstrument"), default="none")
    parser.add_argument("--publish", choices=("inline", "background"), default="inline")
    add_stack_arguments(parser)
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests must be positive")

    with Stack(sqs=args.sqs, worker=False) as stack:
        from django.conf import settings
        from django.test import Client

        from gifting.services.publisher import publisher_flush

        settings.GIFT_PUBLISH_IN_BACKGROUND = args.publish == "background"
        token = stack.senders_created[0][1]
        client = Client(SERVER_NAME="127.0.0.1", HTTP_AUTHORIZATION=f"Token {token}")

        def post(number: int) -> None:
            body = {"recipient_email": f"r{number % 1000}@example.com", "amount": f"{10 + number % 50}.00"}
            response = client.post(
                "/api/v1/gifts/", {**body, "currency": "EUR"}, content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
            )  # fmt: skip
            if response.status_code != 202:
                raise RuntimeError(f"POST answered {response.status_code}: {response.content[:300]!r}")

        for number in range(WARM_UP):
            post(number)
        publisher_flush()
        profiler = None
        if args.profiler == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler()
            profiler.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        for number in range(args.requests):
            post(number)
        publisher_flush()  # the background thread's sends are part of what the requests cost
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if profiler is not None:
            profiler.stop()
            REPORT.write_text(profiler.output_text(unicode=False, color=False))
            say(f"profile in {REPORT}")
    per_request = 1000 / args.requests
    print(
        f"{args.requests} serial POSTs in one process, publish {args.publish}, profiler {args.profiler}: "
        f"wall {wall * per_request:.1f} ms, CPU {cpu * per_request:.1f} ms per request"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
