"""Accept latency while SQS is slowed or down, and delivery once it is back (issue 11).

    bin/ensure-wrk && bin/ensure-localstack
    .venv/bin/python bench/accept_faults.py [--rounds 3] [--seconds 10] [--connections 8] [--senders 8]
        [--delay-ms 50] [--republish-after 5] [--sweep-interval 2] [--sqs moto] [--env NAME=VALUE ...]

Starts the stack (bench/stack.py) with web, worker and beat (the Procfile's beat
line, which the stack does not start: the outbox sweeper runs from it) talking
to SQS through a loopback proxy (bench/sqs_proxy.py) while this process creates
the queues on the SQS server directly. Each round runs wrk (bench/accept.py's
run_wrk and bench/wrk/gifts.lua) for --seconds in each phase, in this order:

    normal  the proxy forwards at once;
    slowed  the proxy forwards each request --delay-ms late (every SQS call takes that much longer);
    down    the proxy refuses new connections and resets open ones (SQS stopped, as clients see it).

After the down phase the proxy forwards at once again and the round waits (at
most --drain-timeout) until every gift accepted so far is `delivered`: the
gifts whose publish failed are published again by the sweeper, which beat runs
every --sweep-interval seconds for gifts --republish-after seconds overdue
(GIFT_SWEEP_INTERVAL, GIFT_REPUBLISH_AFTER; short here so that a round does not
wait minutes). So every round's normal phase starts on an idle, drained system.

Prints each phase of each round, then per phase the medians over rounds of
req/s, p50 and p99, the ratio of the p50 to the normal phase's (target: within
1.2x), the non-202 answers (wrk: other statuses, socket errors, timeouts), the
5xx answers and failed publishes (both from the processes' Prometheus counters,
summed per phase), and the drain after each recovery: gifts delivered of those
accepted (the database's count), and the time from recovery to the last one
delivered. Between phases the script waits until web has served what wrk left
in its listen queue (settle()), so no phase starts behind the last one's requests.
Exit status 1 on any non-202 or 5xx answer or a gift not delivered.

--env NAME=VALUE adds to web's, worker's and beat's environment (repeatable),
e.g. --env GIFT_PUBLISH_IN_BACKGROUND=false to measure publishing in the request.
"""

import argparse
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import requests
from accept import PRODUCT, WARM_UP_SECONDS, Round, run_wrk
from chaos_lib import Process
from sqs_proxy import SqsProxy
from stack import ROOT, Stack, add_stack_arguments, say

PHASES = ("normal", "slowed", "down")
DRAIN_POLL_SECONDS = 0.2
SETTLE_TIMEOUT = 120  # seconds: a few leftover requests, each a few seconds at worst while SQS is down


class ProxiedStack(Stack):
    """bench/stack.py's stack plus beat, with web, worker and beat talking to SQS through a proxy.

    This process (Django set up by Stack, which creates the queues) keeps the SQS server's own
    endpoint; only the processes it starts get the proxy's.
    """

    def __init__(self, *, extra_env: dict[str, str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.proxy = SqsProxy(upstream_port=self.sqs_port).start()
        self.env.update(extra_env)
        self.proxied_env = {**self.env, "SQS_ENDPOINT_URL": self.proxy.url}
        self.beat: Process | None = None

    def _process(self, name: str, argv: list[str]) -> Process:  # Stack starts web and workers here
        return Process(name, argv, env=self.proxied_env, log_path=self.log_dir / f"{name}.log", cwd=ROOT).start()

    def start(self) -> None:
        super().start()
        # The Procfile's beat line, with its schedule file in the run's log directory (not var/'s shared one).
        schedule = str(self.log_dir / "celerybeat-schedule")
        argv = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING", "--schedule", schedule]
        self.beat = self._process("beat", argv)

    def stop(self) -> None:
        if self.beat is not None:
            self.beat.stop(timeout=10)
            self.beat = None
        super().stop()
        self.proxy.stop()


@dataclass(frozen=True)
class PhaseRound:
    phase: str
    wrk: Round
    server_errors: int  # 5xx answers, as web counted them
    publish_failures: int


@dataclass(frozen=True)
class Drain:
    accepted: int
    delivered: int
    seconds: float
    statuses: dict[str, int]


def enter_phase(proxy: SqsProxy, phase: str, *, delay_ms: float) -> None:
    proxy.set_up(phase != "down")
    proxy.set_delay(delay_ms if phase == "slowed" else 0)


def process_counters(metrics_dir: Path) -> Counter[str]:
    """5xx answers and failed publishes so far, summed over every process (Prometheus multiprocess files)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    counts: Counter[str] = Counter()
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "api_request_duration_seconds_count" and sample.labels["status"].startswith("5"):
                counts["5xx"] += int(sample.value)
            elif sample.name == "gift_publish_failures_total":
                counts["publish_failures"] += int(sample.value)
    return counts


def settle(stack: Stack) -> None:
    """Back once web has served the requests wrk left behind.

    When wrk stops, its unanswered requests stay in gunicorn's listen queue and are still served
    (their gifts accepted). Without this they would run in the next phase, ahead of its own
    requests: several seconds of a down phase's publishes, delaying the next phase's first answers.
    A /healthz request queued behind them is answered once they have been taken up (the queue is
    first in, first out; the other gunicorn worker may still be finishing its last one).
    """
    requests.get(f"{stack.base_url}/healthz", timeout=SETTLE_TIMEOUT).raise_for_status()


def run_phase(stack: ProxiedStack, phase: str, *, args: argparse.Namespace, run: str) -> PhaseRound:
    enter_phase(stack.proxy, phase, delay_ms=args.delay_ms)
    metrics_dir = stack.log_dir / "metrics"
    before = process_counters(metrics_dir)
    result = run_wrk(stack, PRODUCT, seconds=args.seconds, connections=args.connections, run=run)
    settle(stack)  # in the phase's own SQS state: the leftovers are this phase's requests
    after = process_counters(metrics_dir)
    return PhaseRound(
        phase=phase,
        wrk=result,
        server_errors=after["5xx"] - before["5xx"],
        publish_failures=after["publish_failures"] - before["publish_failures"],
    )


def drain(*, timeout: float) -> Drain:
    """Wait until every gift in the database is delivered (at most `timeout` seconds); what was reached."""
    from django.db.models import Count

    from gifting.models import Gift, GiftStatus

    started = time.monotonic()
    while True:
        statuses = dict(Gift.objects.values_list("status").annotate(count=Count("id")).order_by())
        done = set(statuses) <= {GiftStatus.DELIVERED}
        if done or time.monotonic() - started > timeout:
            return Drain(
                accepted=sum(statuses.values()),
                delivered=statuses.get(GiftStatus.DELIVERED, 0),
                seconds=time.monotonic() - started,
                statuses=statuses,
            )
        time.sleep(DRAIN_POLL_SECONDS)


def report(results: list[PhaseRound], drains: list[Drain], *, args: argparse.Namespace) -> str:
    normal_p50 = statistics.median(r.wrk.p50_ms for r in results if r.phase == "normal")
    lines = [
        f"accept under SQS faults: wrk {args.connections} connections, {args.senders} sender(s), "
        f"{args.rounds} round(s) of {args.seconds:g} s per phase, SQS: {args.sqs} behind the proxy "
        f"(slowed: +{args.delay_ms:g} ms per request; down: refused and reset)"
        + (f", env {' '.join(args.env)}" if args.env else ""),
        f"{'phase':8} {'answers':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'p50/normal':>10} {'non-202':>8} "
        f"{'5xx':>5} {'publish failed':>14}   (medians over rounds; counts summed)",
    ]
    for phase in PHASES:
        rounds = [r for r in results if r.phase == phase]
        p50 = statistics.median(r.wrk.p50_ms for r in rounds)
        lines.append(
            f"{phase:8} {sum(r.wrk.requests for r in rounds):7d} {statistics.median(r.wrk.rate for r in rounds):7.1f} "
            f"{p50:8.1f} {statistics.median(r.wrk.p99_ms for r in rounds):8.1f} {p50 / normal_p50:9.2f}x "
            f"{sum(r.wrk.failures for r in rounds):8d} {sum(r.server_errors for r in rounds):5d} "
            f"{sum(r.publish_failures for r in rounds):14d}"
        )
        if any(r.wrk.requests == 0 for r in rounds):
            lines.append(f"  ({phase}: a round had no answer within its {args.seconds:g} s: its 0 ms mean none)")
    per_round = ", ".join(f"{d.delivered}/{d.accepted} in {d.seconds:.1f} s" for d in drains)
    lines.append(
        f"after recovery (each round): delivered/accepted {per_round}; "
        f"median time to drain {statistics.median(d.seconds for d in drains):.1f} s "
        f"(sweeper every {args.sweep_interval} s, republish after {args.republish_after} s)"
    )
    lines.append("targets: slowed and down p50 within 1.2x of normal, zero 5xx, every accepted gift delivered")
    return "\n".join(lines)


def parse_env(assignments: list[str]) -> dict[str, str]:
    """NAME=VALUE strings (from --env) as a dict; ValueError for one without '='."""
    env = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not name:
            raise ValueError(f"--env takes NAME=VALUE, not {assignment!r}")
        env[name] = value
    return env


def add_env_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add to the environment of the processes the benchmark starts (repeatable)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--delay-ms", type=float, default=50, help="the slowed phase's delay per SQS request")
    parser.add_argument("--republish-after", type=int, default=5, help="GIFT_REPUBLISH_AFTER for the run")
    parser.add_argument("--sweep-interval", type=int, default=2, help="GIFT_SWEEP_INTERVAL for the run")
    parser.add_argument("--drain-timeout", type=float, default=180, help="seconds each recovery may take")
    add_env_argument(parser)
    add_stack_arguments(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.connections < 1 or args.senders < 1 or args.delay_ms < 0:
        parser.error("--rounds, --seconds, --connections and --senders must be positive, --delay-ms not negative")
    if shutil.which("wrk") is None:
        parser.error("wrk is missing: run bin/ensure-wrk")
    try:
        extra_env = {
            "GIFT_REPUBLISH_AFTER": str(args.republish_after),
            "GIFT_SWEEP_INTERVAL": str(args.sweep_interval),
            **parse_env(args.env),
        }
    except ValueError as exc:
        parser.error(str(exc))

    run = f"{os.getpid()}-{int(time.time())}"
    results: list[PhaseRound] = []
    drains: list[Drain] = []
    with ProxiedStack(sqs=args.sqs, senders=args.senders, extra_env=extra_env) as stack:
        say(f"SQS proxy :{stack.proxy.port} → :{stack.sqs_port}")
        run_wrk(stack, PRODUCT, seconds=WARM_UP_SECONDS, connections=args.connections, run=f"{run}-warm")
        settle(stack)
        for number in range(args.rounds):
            for phase in PHASES:
                result = run_phase(stack, phase, args=args, run=f"{run}-{number}-{phase}")
                results.append(result)
                say(
                    f"round {number + 1} {phase:7} {result.wrk.rate:7.1f} req/s  p50 {result.wrk.p50_ms:7.1f} ms  "
                    f"p99 {result.wrk.p99_ms:7.1f} ms  non-202 {result.wrk.failures}  5xx {result.server_errors}  "
                    f"publish failed {result.publish_failures}"
                    + (f" (first: {result.wrk.example})" if result.wrk.example else "")
                )
            enter_phase(stack.proxy, "normal", delay_ms=args.delay_ms)
            drained = drain(timeout=args.drain_timeout)
            drains.append(drained)
            say(f"round {number + 1} recovery: {drained.delivered}/{drained.accepted} delivered in "
                f"{drained.seconds:.1f} s {drained.statuses}")  # fmt: skip
    text = report(results, drains, args=args)
    print(text, flush=True)
    (ROOT / "var").mkdir(exist_ok=True)
    (ROOT / "var" / "bench-accept-faults.txt").write_text(text + "\n")
    answered = all(r.wrk.failures == 0 and r.server_errors == 0 for r in results)
    delivered = all(d.delivered == d.accepted for d in drains)
    return 0 if answered and delivered else 1


if __name__ == "__main__":
    sys.exit(main())
