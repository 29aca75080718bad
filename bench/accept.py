"""Accept path under closed-loop load: POST /api/v1/gifts/ against its floor, in the same run.

    bin/ensure-wrk && bin/ensure-localstack
    .venv/bin/python bench/accept.py [--rounds 5] [--seconds 10] [--connections 8] [--senders 8] [--sqs moto]

Starts the stack (bench/stack.py: PostgreSQL, Redis, LocalStack, the Procfile's
web and worker under config.settings_bench), then runs wrk (bench/wrk/gifts.lua:
a unique Idempotency-Key per request) against the product and against the
floor (POST /bench/floor/, config/urls_bench.py: the same authentication,
parser and serializer, one row inserted), alternating, --rounds rounds of
--seconds each after one short warm-up round of both. Requests rotate over
--senders senders (a sender's gifts are serialized by its lock, by design, so
one sender can measure that lock rather than the machine). Prints each round, then
the median over rounds of req/s, p50 and p99 of both, and the ratio
product/floor. Every product answer must be 202 and every floor answer 202:
any other status, socket error or timeout makes the exit status 1.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cpu
from stack import CPU_PARTS, ROOT, Stack, add_stack_arguments, say

LUA = Path(__file__).resolve().parent / "wrk" / "gifts.lua"
PRODUCT = "/api/v1/gifts/"
FLOOR = "/bench/floor/"
# The floor again, with as many SQL round trips as one accepted gift makes inside its request
# (tests/gifting/test_accept_queries.py: 24 in all, 7 of them after commit in the publisher thread).
FLOOR_ROUND_TRIPS = 17
WARM_UP_SECONDS = 3


@dataclass(frozen=True)
class Round:
    target: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int  # non-202 answers, socket errors and timeouts
    example: str
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU milliseconds per request, by part of the stack

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def measured_round(stack: Stack, path: str, *, seconds: float, connections: int, run: str) -> Round:
    """run_wrk, with the CPU each part of the stack spent per request meanwhile."""
    before = stack.cpu_seconds()
    result = run_wrk(stack, path, seconds=seconds, connections=connections, run=run)
    spent = cpu.difference(stack.cpu_seconds(), before)
    per_request = {part: 1000 * spent.get(part, 0.0) / max(result.requests, 1) for part in CPU_PARTS}
    return replace(result, cpu_ms=per_request)


def run_wrk(stack: Stack, path: str, *, seconds: float, connections: int, run: str) -> Round:
    """One wrk run of `seconds` against `path`: 2 threads (the machine's cores) and `connections` connections."""
    tokens = ",".join(token for _, token in stack.senders_created)
    env = {**os.environ, "BENCH_TOKENS": tokens, "BENCH_RUN": run, "BENCH_EXPECT": "202"}
    argv = [shutil.which("wrk") or "wrk", "--threads", "2", "--connections", str(connections),
            "--duration", f"{seconds:g}s", "--timeout", "10s", "--latency", "--script", str(LUA),
            f"{stack.base_url}{path}"]  # fmt: skip
    completed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True)  # noqa: S603
    line = next((line for line in completed.stdout.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{completed.stdout}\n{completed.stderr}")
    facts = json.loads(line.removeprefix("BENCH "))
    return Round(
        target=path,
        requests=facts["requests"],
        seconds=facts["duration_us"] / 1e6,
        p50_ms=facts["p50_us"] / 1000,
        p99_ms=facts["p99_us"] / 1000,
        failures=facts["unexpected"] + facts["socket_errors"] + facts["timeouts"],
        example=facts["example"],
    )


def summary(rounds: list[Round]) -> dict[str, float]:
    return {
        "rate": statistics.median(r.rate for r in rounds),
        "p50": statistics.median(r.p50_ms for r in rounds),
        "p99": statistics.median(r.p99_ms for r in rounds),
        "failures": sum(r.failures for r in rounds),
    }


def report(
    product: list[Round], floor: list[Round], floor_sql: list[Round], *, connections: int, senders: int, sqs: str
) -> str:
    p, f, fs = summary(product), summary(floor), summary(floor_sql)
    lines = [
        f"accept path, wrk {connections} connections, {senders} sender(s), {len(product)} rounds each, SQS: {sqs}",
        f"{'':10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-202':>8}   (medians over rounds)",
        f"{'product':10} {p['rate']:8.1f} {p['p50']:8.1f} {p['p99']:8.1f} {p['failures']:8d}",
        f"{'floor':10} {f['rate']:8.1f} {f['p50']:8.1f} {f['p99']:8.1f} {f['failures']:8d}",
        f"{'floor+sql':10} {fs['rate']:8.1f} {fs['p50']:8.1f} {fs['p99']:8.1f} {fs['failures']:8d}"
        f"   (the floor plus {FLOOR_ROUND_TRIPS} SELECT 1 in a transaction: the product's round trips)",
        f"ratio product/floor: {p['rate'] / f['rate']:.2f}x throughput (target >= 0.5x), "
        f"p50 {p['p50'] / f['p50']:.2f}x, p99 {p['p99'] / f['p99']:.2f}x",
        f"ratio floor+sql/floor: {fs['rate'] / f['rate']:.2f}x throughput: what round trips alone cost",
        "",
        "CPU ms per request by part of the stack (medians over rounds; postgres and redis are the machine's,",
        "so they include whatever else runs on it):",
        f"{'':10} " + " ".join(f"{part:>13}" for part in (*CPU_PARTS, "total")),
    ]
    for name, rounds in (("product", product), ("floor", floor), ("floor+sql", floor_sql)):
        medians = {part: statistics.median(r.cpu_ms.get(part, 0.0) for r in rounds) for part in CPU_PARTS}
        row = " ".join(f"{medians[part]:13.1f}" for part in CPU_PARTS)
        lines.append(f"{name:10} {row} {sum(medians.values()):13.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--senders",
        type=int,
        default=8,
        help="senders the requests rotate over (one sender's gifts are serialized by its lock, by design)",
    )
    parser.add_argument("--no-worker", action="store_true", help="leave the worker stopped (the queue only grows)")
    add_stack_arguments(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.connections < 1 or args.senders < 1:
        parser.error("--rounds, --seconds, --connections and --senders must be positive")
    if shutil.which("wrk") is None:
        parser.error("wrk is missing: run bin/ensure-wrk")

    run = f"{os.getpid()}-{int(time.time())}"
    product: list[Round] = []
    floor: list[Round] = []
    floor_sql: list[Round] = []
    floor_sql_path = f"{FLOOR}?round_trips={FLOOR_ROUND_TRIPS}"
    with Stack(sqs=args.sqs, senders=args.senders) as stack:
        if args.no_worker:
            stack.stop_worker()
        for path in (PRODUCT, FLOOR, floor_sql_path):  # warm-up: connections, imports, caches; not counted
            run_wrk(stack, path, seconds=WARM_UP_SECONDS, connections=args.connections, run=f"{run}-warm")
        for number in range(args.rounds):
            # Alternating, so drift on a shared machine hits both alike.
            for path, rounds in ((PRODUCT, product), (FLOOR, floor), (floor_sql_path, floor_sql)):
                result = measured_round(
                    stack, path, seconds=args.seconds, connections=args.connections, run=f"{run}-{number}"
                )
                rounds.append(result)
                say(
                    f"round {number + 1} {path:30} {result.rate:7.1f} req/s  p50 {result.p50_ms:6.1f} ms  "
                    f"p99 {result.p99_ms:6.1f} ms  non-202 {result.failures}"
                    + (f" (first: {result.example})" if result.example else "")
                )
    text = report(product, floor, floor_sql, connections=args.connections, senders=args.senders, sqs=args.sqs)
    print(text, flush=True)
    (ROOT / "var").mkdir(exist_ok=True)
    (ROOT / "var" / "bench-accept.txt").write_text(text + "\n")
    return 0 if all(r.failures == 0 for r in product + floor + floor_sql) else 1


if __name__ == "__main__":
    sys.exit(main())
