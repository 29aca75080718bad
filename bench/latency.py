"""Idle end-to-end latency (202 → delivered) and serial one-client POST latency (issue 11).

    bin/ensure-localstack
    .venv/bin/python bench/latency.py [--gifts 200] [--timeout 30] [--sqs moto] [--env NAME=VALUE ...]

Starts the stack (bench/stack.py: web and worker; nothing else loads it), then
one client sends --gifts gifts one at a time: POST /api/v1/gifts/ (a fresh
Idempotency-Key each) until its 202, then the gift's status read from the
database every POLL_SECONDS until it is `delivered` (at most --timeout seconds),
and only then the next gift. WARM_UP gifts go first and are not counted.

Two figures come out of the same run, each as median, p99 and worst:
- POST → 202: one client, one request at a time, on an otherwise idle system
  (target: p50 < 15 ms); beside it, after each delivery, one POST of the same
  body to the floor (bench/accept.py's /bench/floor/), timed the same way: what
  any request costs on this machine at this moment;
- 202 → delivered: from the client holding the 202 to the poll that sees
  `delivered` (publish, SQS, the worker's receive, the voucher, the email to the
  SMTP sink, the commit); the poll adds up to POLL_SECONDS.
Exit status 1 if any POST is not answered 202 or any gift is not delivered in time.

--env NAME=VALUE adds to web's and worker's environment (repeatable), e.g.
--env GIFT_PUBLISH_IN_BACKGROUND=false.
"""

import argparse
import math
import statistics
import sys
import time
import uuid

import requests
from accept import FLOOR, PRODUCT
from accept_faults import add_env_argument, parse_env
from stack import ROOT, Stack, add_stack_arguments, say

WARM_UP = 10
POLL_SECONDS = 0.005


def percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `percent` % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def post(session: requests.Session, stack: Stack, path: str, number: int) -> tuple[dict, float]:
    """POST one gift to `path`; (the answer, seconds to it). RuntimeError for anything but a 202."""
    _, token = stack.senders_created[0]
    body = {"recipient_email": f"friend-{number % 1000}@example.com", "amount": "10.00", "currency": "EUR"}
    headers = {"Authorization": f"Token {token}", "Idempotency-Key": f"latency-{uuid.uuid4()}"}
    started = time.perf_counter()
    response = session.post(f"{stack.base_url}{path}", json=body, headers=headers, timeout=30)
    elapsed = time.perf_counter() - started
    if response.status_code != 202:
        raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:200]}")
    return response.json(), elapsed


def wait_delivered(gift_id: str, *, timeout: float) -> str:
    """Poll the gift's status until it leaves `queued` or `timeout` seconds pass; the last status read."""
    from gifting.models import Gift, GiftStatus

    deadline = time.perf_counter() + timeout
    while True:
        status = Gift.objects.filter(pk=gift_id).values_list("status", flat=True).first()
        if status != GiftStatus.QUEUED or time.perf_counter() > deadline:
            return status
        time.sleep(POLL_SECONDS)


def describe(name: str, seconds: list[float]) -> str:
    if not seconds:
        return f"{name:18} (none)"
    ms = [value * 1000 for value in seconds]
    return (
        f"{name:18} p50 {statistics.median(ms):7.1f} ms   p99 {percentile(ms, 99):7.1f} ms   "
        f"max {max(ms):7.1f} ms   (n={len(ms)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gifts", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=30, help="seconds one gift may take to be delivered")
    add_env_argument(parser)
    add_stack_arguments(parser)
    args = parser.parse_args(argv)
    if args.gifts < 1 or args.timeout <= 0:
        parser.error("--gifts and --timeout must be positive")
    try:
        extra_env = parse_env(args.env)
    except ValueError as exc:
        parser.error(str(exc))

    accept: list[float] = []
    floor: list[float] = []
    deliver: list[float] = []
    undelivered: list[str] = []
    stack = Stack(sqs=args.sqs, senders=1)
    stack.env.update(extra_env)
    with stack, requests.Session() as session:
        for number in range(WARM_UP + args.gifts):
            gift, post_seconds = post(session, stack, PRODUCT, number)
            accepted = time.perf_counter()
            status = wait_delivered(gift["id"], timeout=args.timeout)
            delivered = time.perf_counter()
            _, floor_seconds = post(session, stack, FLOOR, number)  # the same idle moment, for reference
            if number < WARM_UP:
                continue
            accept.append(post_seconds)
            floor.append(floor_seconds)
            if status == "delivered":
                deliver.append(delivered - accepted)
            else:
                undelivered.append(f"{gift['id']} {status}")
            if (number - WARM_UP + 1) % 50 == 0:
                say(f"{number - WARM_UP + 1}/{args.gifts} gifts")
    lines = [
        f"one client, one gift at a time, {args.gifts} gifts after {WARM_UP} not counted, SQS: {args.sqs}"
        + (f", env {' '.join(args.env)}" if args.env else ""),
        describe("POST -> 202", accept) + "   target: p50 < 15 ms",
        describe("floor POST -> 202", floor) + f"   ({FLOOR}, one after each delivery)",
        describe("202 -> delivered", deliver) + f"   (polled every {POLL_SECONDS * 1000:g} ms)",
    ]
    if undelivered:
        lines.append(f"not delivered within {args.timeout:g} s: {len(undelivered)}, e.g. {undelivered[:3]}")
    text = "\n".join(lines)
    print(text, flush=True)
    (ROOT / "var").mkdir(exist_ok=True)
    (ROOT / "var" / "bench-latency.txt").write_text(text + "\n")
    return 1 if undelivered else 0


if __name__ == "__main__":
    sys.exit(main())
