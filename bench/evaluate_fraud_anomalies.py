"""Evaluate the per-sender anomaly signal offline: precision and recall against the fixed rules alone.

Usage: `make evaluate-anomalies`, or

    DJANGO_DEBUG=true .venv/bin/python bench/evaluate_fraud_anomalies.py [--senders 4000] [--seed 10]
        [--doc docs/anomaly-detection.md | --no-doc]

Generates a population of senders with their own habits (log-normal amounts around a median of
their own, usual hours of day, a few recurring recipients, a rate), gives each one ordinary next
gift (label: legitimate), and injects fraud from other senders of the same kind (label: fraud):

- takeover: 4-15x the victim's median, at an hour far from their usual ones, to a new recipient;
- slow_ramp: the last weeks ramp amounts up towards one new recipient, then 8x the median to them;
- mule: a modest gift to a recipient that 2-5 other senders paid within the fan-in window;
- burst: 10-15 small gifts in the last hour (velocity), this one to a new recipient;
- new_account: a days-old account with at most two gifts sends 150-900.

Legitimate senders are not all tidy: some send a big present now and then, at an odd hour, to a
new recipient, chip in on group gifts (several senders, one recipient) or send a batch at once.

Each gift goes through the code that ships: fraud.services.gift_facts, fraud.rules.evaluate and
fraud.decisions.decide (hard limits aside: amounts are kept within them). A gift counts as flagged
when the decision is a rejection or a hold for approval. Compared: (a) today's rules (every rule
but `anomaly`), (b) the anomaly score alone at the lowest threshold that keeps (a)'s precision,
(c) the real decision with the `anomaly` rule, at the lowest FRAUD_ANOMALY_THRESHOLD that keeps
(a)'s precision (and at the shipped setting). Prints the report and writes it between the markers
in the doc's Fraud section.
"""

import argparse
import math
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project's packages (imported once Django is set up)

DOC = ROOT / "docs" / "anomaly-detection.md"
START_MARKER = "<!-- fraud-evaluation:start -->"
END_MARKER = "<!-- fraud-evaluation:end -->"
PATTERNS = ("takeover", "slow_ramp", "mule", "burst", "new_account")
THRESHOLDS = [x / 2 for x in range(4, 21)]  # 2.0, 2.5, ... 10.0
DAY = timedelta(days=1)
TODAY = datetime(2030, 6, 1, tzinfo=UTC)


@dataclass
class Sender:
    """A sender's habits and past gifts: (time, amount, recipient), oldest first."""

    name: str
    age: timedelta
    median: float
    sigma: float
    hour_centre: float
    hour_spread: float  # standard deviation in hours; 0 means any hour
    new_recipient_rate: float
    recipients: list[str] = field(default_factory=list)
    gifts: list[tuple[datetime, Decimal, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    pattern: str  # "legitimate" or one of PATTERNS
    now: datetime
    amount: Decimal
    history: object  # fraud.history.SenderHistory


def money(value: float) -> Decimal:
    """Within the hard limits (FRAUD_MIN_AMOUNT..FRAUD_MAX_AMOUNT), to the cent."""
    return Decimal(str(round(min(max(value, 1.0), 2000.0), 2)))


def draw_hour(rng: random.Random, sender: Sender) -> int:
    if sender.hour_spread == 0:
        return rng.randrange(24)
    return round(rng.gauss(sender.hour_centre, sender.hour_spread)) % 24


def draw_amount(rng: random.Random, sender: Sender) -> Decimal:
    return money(math.exp(rng.gauss(math.log(sender.median), sender.sigma)))


def draw_recipient(rng: random.Random, sender: Sender) -> str:
    """A recurring recipient (the first ones are the favourites), or now and then a new one."""
    if not sender.recipients or rng.random() < sender.new_recipient_rate:
        sender.recipients.append(f"{sender.name}-r{len(sender.recipients)}")
        return sender.recipients[-1]
    weights = [1 / (rank + 1) for rank in range(len(sender.recipients))]
    return rng.choices(sender.recipients, weights)[0]


def new_sender(rng: random.Random, name: str, *, young: bool = False) -> Sender:
    """A sender with their habits and up to 90 days of gifts before TODAY."""
    age = (
        timedelta(days=rng.uniform(0, 6.9))
        if young
        else timedelta(days=rng.choice([rng.uniform(8, 60), rng.uniform(60, 1500)]))
    )
    sender = Sender(
        name=name,
        age=age,
        median=min(400.0, max(5.0, math.exp(rng.gauss(math.log(35), 0.6)))),
        sigma=rng.uniform(0.15, 0.6),
        hour_centre=rng.choice([8, 12, 13, 18, 19, 20, 21, 22]) + rng.uniform(-1, 1),
        hour_spread=0 if rng.random() < 0.15 else rng.uniform(1, 3),
        new_recipient_rate=rng.uniform(0.05, 0.35),
    )
    days = min(90.0, age / DAY)
    count = min(rng.randrange(0, 3), int(days) + 1) if young else int(rng.uniform(0, 60) * days / 90)
    for _ in range(count):
        day = TODAY - timedelta(days=int(rng.uniform(1, max(1.0, days) + 1)))
        at = day + timedelta(hours=draw_hour(rng, sender), minutes=rng.randrange(60))
        sender.gifts.append((at, draw_amount(rng, sender), draw_recipient(rng, sender)))
    sender.gifts.sort()
    return sender


def history_of(sender: Sender, *, now: datetime, recipient: str, other_senders: int, last_hour: int = 0):
    """The SenderHistory gifting's selectors would gather (same windows, same cap), from the sender's gifts."""
    from fraud.history import RECENT_GIFTS_CAP, RecentGifts, SenderHistory, Totals, windows_at

    windows = windows_at(now)
    gifts = [g for g in sender.gifts if g[0] < now]
    gifts += [(now - timedelta(minutes=50 - i * 3), money(sender.median * 0.5), f"batch-{i}") for i in range(last_hour)]

    def totals(since: datetime, until: datetime = now) -> Totals:
        chosen = [amount for at, amount, _ in gifts if since <= at < until]
        return Totals(count=len(chosen), value=sum(chosen, Decimal("0")))

    recent = sorted((g for g in gifts if windows.recent_since <= g[0] < windows.baseline_until), reverse=True)[
        :RECENT_GIFTS_CAP
    ]
    return SenderHistory(
        account_age=sender.age,
        last_hour=totals(windows.last_hour_since),
        last_day=totals(windows.last_day_since),
        last_week=totals(windows.last_week_since),
        baseline=totals(windows.baseline_since, windows.baseline_until),
        recipient_other_senders=other_senders,
        recent=RecentGifts(
            amounts=tuple(amount for _, amount, _ in recent),
            hours=tuple(at.hour for at, _, _ in recent),
            distinct_recipients=len({r for _, _, r in recent}),
            sent_to_recipient=recipient in {r for _, _, r in recent},
        ),
    )


def legitimate_case(rng: random.Random, sender: Sender) -> Case:
    """The sender's next gift, with the odd big present, odd hour, group gift or batch."""
    amount = draw_amount(rng, sender)
    if rng.random() < 0.05:
        amount = money(float(amount) * rng.uniform(3, 6))
    hour = rng.randrange(24) if rng.random() < 0.05 else draw_hour(rng, sender)
    now = TODAY + timedelta(hours=hour, minutes=rng.randrange(60))
    recipient = draw_recipient(rng, sender)
    other_senders = rng.randint(2, 4) if rng.random() < 0.03 else 0
    last_hour = rng.randint(10, 14) if rng.random() < 0.01 else 0
    history = history_of(sender, now=now, recipient=recipient, other_senders=other_senders, last_hour=last_hour)
    return Case("legitimate", now, amount, history)


def far_hour(rng: random.Random, sender: Sender) -> int:
    return round(sender.hour_centre + rng.uniform(8, 16)) % 24


def fraud_case(rng: random.Random, pattern: str, name: str) -> Case:
    sender = new_sender(rng, name, young=pattern == "new_account")
    new = f"{name}-fraud"
    if pattern == "takeover":
        now = TODAY + timedelta(hours=far_hour(rng, sender), minutes=rng.randrange(60))
        amount = money(max(20.0, sender.median * rng.uniform(4, 15)))
        return Case(pattern, now, amount, history_of(sender, now=now, recipient=new, other_senders=0))
    if pattern == "slow_ramp":
        for step, days_ago in enumerate((20, 16, 12, 9, 6, 3)):
            at = TODAY - timedelta(days=days_ago) + timedelta(hours=draw_hour(rng, sender))
            sender.gifts.append((at, money(sender.median * (1.5 + step)), new))
        sender.gifts.sort()
        now = TODAY + timedelta(hours=draw_hour(rng, sender))
        amount = money(sender.median * 8)
        return Case(pattern, now, amount, history_of(sender, now=now, recipient=new, other_senders=0))
    if pattern == "mule":
        now = TODAY + timedelta(hours=draw_hour(rng, sender))
        amount = money(sender.median * rng.uniform(1, 2))
        history = history_of(sender, now=now, recipient=new, other_senders=rng.randint(2, 5))
        return Case(pattern, now, amount, history)
    if pattern == "burst":
        now = TODAY + timedelta(hours=rng.randrange(24))
        amount = money(sender.median * rng.uniform(0.5, 1.5))
        history = history_of(sender, now=now, recipient=new, other_senders=0, last_hour=rng.randint(10, 15))
        return Case(pattern, now, amount, history)
    now = TODAY + timedelta(hours=rng.randrange(24))
    return Case(pattern, now, money(rng.uniform(150, 900)), history_of(sender, now=now, recipient=new, other_senders=0))


def population(*, senders: int, fraud_share: float, seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for i in range(senders):
        cases.append(legitimate_case(rng, new_sender(rng, f"s{i}", young=rng.random() < 0.1)))
    for i in range(round(senders * fraud_share)):
        cases.append(fraud_case(rng, PATTERNS[i % len(PATTERNS)], f"f{i}"))
    return cases


@dataclass(frozen=True)
class Scores:
    """Precision and recall of one detector over the cases; recall also per fraud pattern."""

    flagged: int
    precision: float
    recall: float
    by_pattern: dict[str, float]


def measure(cases: list[Case], flagged: list[bool]) -> Scores:
    fraud = Counter(c.pattern for c in cases if c.pattern != "legitimate")
    caught = Counter(c.pattern for c, f in zip(cases, flagged, strict=True) if f and c.pattern != "legitimate")
    hits = sum(caught.values())
    total = sum(flagged)
    return Scores(
        flagged=total,
        precision=hits / total if total else 1.0,
        recall=hits / sum(fraud.values()),
        by_pattern={p: caught[p] / fraud[p] for p in fraud},
    )


def evaluate(cases: list[Case]) -> dict:
    from django.conf import settings

    from fraud import rules
    from fraud.anomaly import anomaly_score
    from fraud.decisions import Decision, HoldTier, decide
    from fraud.history import windows_at
    from fraud.services import gift_facts

    def flagged_by(verdict) -> bool:
        return verdict.decision == Decision.REJECT or verdict.hold_tier == HoldTier.APPROVAL

    facts = [gift_facts(amount=c.amount, history=c.history, windows=windows_at(c.now)) for c in cases]
    anomaly_known = [f.recent.count >= settings.FRAUD_ANOMALY_MIN_HISTORY for f in facts]
    scores = [
        anomaly_score(amount=f.amount, hour=f.hour, account_age=f.account_age, recent=f.recent).score for f in facts
    ]

    def decisions(threshold: float | None) -> list[bool]:
        """The shipped decision, with the anomaly rule at `threshold` (None: without it, as today)."""
        result = []
        for case, fact in zip(cases, facts, strict=True):
            if threshold is None:
                signals = [s for s in rules.evaluate(fact) if s.rule != rules.RuleName.ANOMALY]
            else:
                settings.FRAUD_ANOMALY_THRESHOLD = threshold
                signals = rules.evaluate(fact)
            verdict = decide(amount=case.amount, signals=signals, recipient_is_email=True, now=case.now)
            result.append(flagged_by(verdict))
        return result

    shipped = settings.FRAUD_ANOMALY_THRESHOLD
    try:
        fixed = measure(cases, decisions(None))
        alone = {
            t: measure(cases, [k and s >= t for k, s in zip(anomaly_known, scores, strict=True)]) for t in THRESHOLDS
        }
        combined = {t: measure(cases, decisions(t)) for t in THRESHOLDS}
        at_shipped = measure(cases, decisions(shipped))
    finally:
        settings.FRAUD_ANOMALY_THRESHOLD = shipped

    def lowest_keeping_precision(table: dict[float, Scores]) -> float | None:
        good = [t for t, s in table.items() if s.precision >= fixed.precision]
        return min(good) if good else None

    return {
        "fixed": fixed,
        "alone": alone,
        "combined": combined,
        "alone_at": lowest_keeping_precision(alone),
        "combined_at": lowest_keeping_precision(combined),
        "shipped": shipped,
        "at_shipped": at_shipped,
        "score": settings.FRAUD_ANOMALY_SCORE,
        "min_history": settings.FRAUD_ANOMALY_MIN_HISTORY,
    }


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def report(cases: list[Case], result: dict, *, senders: int, seed: int) -> str:
    fixed, alone, combined = result["fixed"], result["alone"], result["combined"]
    alone_at, combined_at = result["alone_at"], result["combined_at"]
    counts = Counter(c.pattern for c in cases)
    rows = [("(a) fixed rules alone (today)", "held for approval or rejected", fixed)]
    if alone_at is not None:
        rows.append(("(b) anomaly score alone", f"score >= {alone_at:g}", alone[alone_at]))
    if combined_at is not None:
        rows.append(("(c) rules + anomaly signal", f"FRAUD_ANOMALY_THRESHOLD={combined_at:g}", combined[combined_at]))
    rows.append(("(c') at the shipped setting", f"FRAUD_ANOMALY_THRESHOLD={result['shipped']:g}", result["at_shipped"]))
    lines = [
        f"Population: {senders} senders, seed {seed}; {counts['legitimate']} legitimate gifts and "
        f"{len(cases) - counts['legitimate']} fraudulent ones ("
        + ", ".join(f"{counts[p]} {p}" for p in PATTERNS)
        + f"). Anomaly signal: score {result['score']}, at least {result['min_history']} recent gifts. "
        "(b) and (c) are taken at the lowest threshold whose precision is at least (a)'s.",
        "",
        "| detector | operating point | flagged | precision | recall |",
        "|---|---|---:|---:|---:|",
        *(f"| {name} | {point} | {s.flagged} | {pct(s.precision)} | {pct(s.recall)} |" for name, point, s in rows),
        "",
        "Recall by fraud pattern:",
        "",
        "| pattern | gifts | " + " | ".join(name.split(" ", 1)[0] for name, _, _ in rows) + " |",
        "|---|---:|" + "---:|" * len(rows),
        *(
            f"| {p} | {counts[p]} | " + " | ".join(pct(s.by_pattern.get(p, 0.0)) for _, _, s in rows) + " |"
            for p in PATTERNS
        ),
        "",
        "Threshold sweep:",
        "",
        "| threshold | (b) precision | (b) recall | (c) precision | (c) recall |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {t:g} | {pct(alone[t].precision)} | {pct(alone[t].recall)} | "
            f"{pct(combined[t].precision)} | {pct(combined[t].recall)} |"
            for t in THRESHOLDS
        ),
        "",
    ]
    if combined_at is None:
        lines.append("Verdict: no threshold keeps the rules' precision; the signal adds nothing at equal precision.")
    else:
        gain = combined[combined_at].recall - fixed.recall
        verdict = "keep the signal" if gain > 0 else "drop the signal"
        lines.append(
            f"Verdict: at equal precision ({pct(combined[combined_at].precision)} >= {pct(fixed.precision)}) "
            f"the anomaly signal adds {100 * gain:.1f} points of recall: {verdict}."
        )
    return "\n".join(lines) + "\n"


def write_into(doc: Path, text: str) -> None:
    """Replace what lies between the markers (in the Fraud section) and nothing else."""
    content = doc.read_text()
    start, end = content.index(START_MARKER) + len(START_MARKER), content.index(END_MARKER)
    doc.write_text(content[:start] + "\n" + text + content[end:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--senders", type=int, default=4000)
    parser.add_argument("--fraud-share", type=float, default=0.1, help="fraudulent gifts per sender")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    if args.senders < 10:
        parser.error("--senders must be at least 10")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    cases = population(senders=args.senders, fraud_share=args.fraud_share, seed=args.seed)
    text = report(cases, evaluate(cases), senders=args.senders, seed=args.seed)
    print(text)
    if not args.no_doc:
        write_into(args.doc, text)
        print(f"written into {args.doc}")


if __name__ == "__main__":
    main()
