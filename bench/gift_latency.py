"""Measure a running system: API latency to 202 and time from 202 to `delivered`.

Usage: start the system with limits a benchmark does not trip over (one sender
sending many gifts in a minute is exactly what rate limits, quotas and the
velocity rule stop), then run this from another terminal:

    RATELIMIT_GIFT_USER=100000/m FRAUD_DAILY_COUNT=100000 FRAUD_DAILY_VALUE=100000000 \
    FRAUD_WEEKLY_COUNT=100000 FRAUD_WEEKLY_VALUE=100000000 FRAUD_VELOCITY_MIN_COUNT=100000 make run

    .venv/bin/python bench/gift_latency.py --username alice --password '…' [--gifts 20]

Sends gifts one by one to 127.0.0.1 only, polls each until it is delivered
(bounded by --timeout), and prints the median and worst of both numbers.
"""

import argparse
import json
import statistics
import time
import urllib.request
import uuid


def call(base: str, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 - main() allows loopback http only
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        return response.status, json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--gifts", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    if not args.base.startswith(("http://127.", "http://localhost")):
        parser.error("--base must be a loopback address")

    _, token = call(args.base, "POST", "/api/v1/auth/token/", {"username": args.username, "password": args.password})
    auth = {"Authorization": f"Token {token['token']}"}
    accept_ms, deliver_ms = [], []
    for _ in range(args.gifts):
        started = time.perf_counter()
        status, gift = call(
            args.base,
            "POST",
            "/api/v1/gifts/",
            {"recipient_email": "bench@example.com", "amount": "10.00", "currency": "EUR"},
            {**auth, "Idempotency-Key": str(uuid.uuid4())},
        )
        accepted = time.perf_counter()
        assert status == 202, status
        accept_ms.append((accepted - started) * 1000)
        while time.perf_counter() - accepted < args.timeout:
            _, detail = call(args.base, "GET", f"/api/v1/gifts/{gift['id']}/", headers=auth)
            if detail["status"] != "queued":
                break
            time.sleep(0.02)
        assert detail["status"] == "delivered", detail["status"]
        deliver_ms.append((time.perf_counter() - accepted) * 1000)

    for name, values in (("POST → 202", accept_ms), ("202 → delivered", deliver_ms)):
        print(f"{name:16} median {statistics.median(values):7.1f} ms   worst {max(values):7.1f} ms   (n={len(values)})")


if __name__ == "__main__":
    main()
