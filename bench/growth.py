"""Growth: serial accept latency and the review queue with 10 thousand, then 1 million existing gifts.

    .venv/bin/python bench/growth.py [--sizes 10000,1000000] [--requests 300] [--held 50] [--sqs moto]
    .venv/bin/python bench/growth.py --quick    # 1,000 and 5,000 gifts, a few requests: does it run?

For each size, on a fresh database (bench/stack.py: PostgreSQL, Redis, SQS, the Procfile's web;
no worker: sending is not what this measures, and it would compete for the cores):

1. bulk-loads that many gifts with their audit events and risk assessments in SQL
   (INSERT … SELECT over generate_series): 200 senders, 50,000 recipients (each email
   encrypted once, with its real blind index), created_at spread over the last 30 days,
   96 % delivered, 2 % rejected, 2 % failed; plus --held gifts held for approval from as
   many senders, so the review queue's first page is full; then VACUUM ANALYZE;
2. times --requests serial POST /api/v1/gifts/ (one client, keep-alive, after a warm-up)
   from one of the 200 senders, to recipients of the loaded history;
3. times --review-requests GET /admin/gifting/giftreview/ as a staff reviewer;
4. runs one accepted POST and one review page through Django's test client in this process,
   against the same database, captures every SQL statement, and replays each as
   EXPLAIN (ANALYZE, BUFFERS) in a transaction that is rolled back (an INSERT that would now
   collide with the row it inserted gets a plain EXPLAIN).

Prints p50/p99 per size and the ratios of the largest size to the smallest; writes the
summary to var/bench-growth.txt and every plan to var/bench-growth-explain.txt.
"""

import argparse
import io
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field

from stack import ROOT, Stack, add_stack_arguments, say

SENDERS = 200
RECIPIENTS = 50_000
MESSAGES = 300  # distinct encrypted messages, reused: a message is never looked up
HISTORY_DAYS = 30
GIFTS = "/api/v1/gifts/"
REVIEW_QUEUE = "/admin/gifting/giftreview/"
ACCEPT_TARGET = 1.3  # issue 11: accept p50 with the largest size within 1.3x of the smallest
HOST = "127.0.0.1"  # DJANGO_ALLOWED_HOSTS of the stack; the test client's "testserver" is not in it

# Each status's events, in order, with who records them: what the services write for such a gift.
EVENTS_OF_STATUS = {
    "delivered": [("created", "user"), ("queued", "api"), ("delivery_attempted", "worker"), ("delivered", "worker")],
    "rejected": [("created", "user"), ("rejected", "rules")],
    "failed": [
        ("created", "user"),
        ("queued", "api"),
        ("delivery_attempted", "worker"),
        ("failed", "worker"),
        ("dead_lettered", "worker"),
    ],
    "held": [("created", "user"), ("held", "rules")],
}


@dataclass
class Size:
    gifts: int
    load_seconds: float = 0.0
    events: int = 0
    accept_ms: list[float] = field(default_factory=list)
    review_ms: list[float] = field(default_factory=list)
    accept_plans: list["Plan"] = field(default_factory=list)
    review_plans: list["Plan"] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    sql: str
    text: str
    analyzed: bool

    @property
    def top(self) -> str:
        return re.sub(r"\s+\(cost=.*", "", self.text.splitlines()[0]).strip()

    @property
    def access(self) -> str:
        scans = re.findall(r"((?:Parallel )?(?:Seq|Index Only|Index|Bitmap Index|Bitmap Heap) Scan)", self.text)
        return ", ".join(sorted(set(scans))) or "no scan"

    @property
    def milliseconds(self) -> float | None:
        found = re.search(r"Execution Time: ([\d.]+) ms", self.text)
        return float(found.group(1)) if found else None

    def summary(self) -> str:
        time_text = f"{self.milliseconds:7.3f} ms" if self.milliseconds is not None else "  (plan only)"
        return f"{time_text}  {self.top[:48]:48}  {self.access[:40]:40}  {statement_head(self.sql)}"


def statement_head(sql: str) -> str:
    """The statement's verb and first table, enough to tell the statements of one request apart."""
    verb = sql.split(None, 1)[0].upper()
    table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql)
    return f"{verb} {table.group(1) if table else ''}".strip()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- Loading ------------------------------------------------------------------------------------


def recipient_emails() -> list[str]:
    return [f"growth-recipient-{number}@example.org" for number in range(RECIPIENTS)]


def load_history(*, gifts: int, held: int, sender_id: int) -> int:
    """Bulk-load `gifts` gifts (plus `held` held ones) with events and risk assessments; returns the events."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection
    from django.utils import timezone

    from core import crypto

    user_model = get_user_model()
    unusable = make_password(None)  # senders that never log in: only the measured one has a token
    joined = timezone.now() - timedelta(days=HISTORY_DAYS * 2)
    others = user_model.objects.bulk_create(
        user_model(username=f"growth-sender-{number}", password=unusable, date_joined=joined)
        for number in range(1, SENDERS)
    )
    sender_ids = [sender_id, *(user.pk for user in others)]
    started = time.monotonic()
    recipients = [
        (number, crypto.encrypt(email), crypto.recipient_index(email=email, wallet=""))
        for number, email in enumerate(recipient_emails())
    ]
    messages = [(number, crypto.encrypt(f"Happy birthday, number {number}!")) for number in range(MESSAGES)]
    say(f"encrypted {len(recipients)} recipients and {len(messages)} messages in {time.monotonic() - started:.1f} s")

    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")  # this session only: a bulk load, not the product
        cursor.execute("CREATE TEMPORARY TABLE growth_sender (n int PRIMARY KEY, user_id int)")
        cursor.execute("CREATE TEMPORARY TABLE growth_recipient (n int PRIMARY KEY, email text, idx text)")
        cursor.execute("CREATE TEMPORARY TABLE growth_message (n int PRIMARY KEY, message text)")
        copy_rows(cursor, "growth_sender (n, user_id)", list(enumerate(sender_ids)))
        copy_rows(cursor, "growth_recipient (n, email, idx)", recipients)
        copy_rows(cursor, "growth_message (n, message)", messages)
        cursor.execute("SELECT setseed(0.11)")  # the same history on every run
        timed(cursor, f"{gifts} gifts", INSERT_GIFTS, [HISTORY_DAYS, gifts])
        timed(cursor, f"{held} held gifts", INSERT_HELD, [held])
        timed(cursor, "risk assessments", INSERT_RISK)
        values = ", ".join(  # constants of this module: plain words and numbers
            f"('{status}', {step}, '{type_}', '{label}')"
            for status, steps in EVENTS_OF_STATUS.items()
            for step, (type_, label) in enumerate(steps)
        )
        timed(cursor, "events", INSERT_EVENTS.format(values=values))
        cursor.execute("SELECT count(*) FROM gifting_giftevent")
        events = cursor.fetchone()[0]
        for table in ("growth_sender", "growth_recipient", "growth_message"):
            cursor.execute(f"DROP TABLE {table}")
        cursor.execute("RESET synchronous_commit")
        # What autovacuum would have done by now on a table that grew this much: statistics, and the
        # visibility map (without it no index-only scan pays off).
        for table in ("gifting_gift", "gifting_giftevent", "fraud_riskassessment", "auth_user"):
            timed(cursor, f"VACUUM ANALYZE {table}", f"VACUUM (ANALYZE) {table}")
    return events


def copy_rows(cursor, target: str, rows: list[tuple]) -> None:
    with cursor.cursor.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def timed(cursor, what: str, statement: str, params: list | None = None) -> None:
    started = time.monotonic()
    cursor.execute(statement, params)
    say(f"  {what}: {cursor.rowcount if cursor.rowcount >= 0 else ''} in {time.monotonic() - started:.1f} s")


# Gift i: sender i mod 200, a random recipient of the 50,000, a message for three gifts in four,
# created at a random moment of the last HISTORY_DAYS days; 96 % delivered, 2 % rejected, 2 % failed.
INSERT_GIFTS = """
INSERT INTO gifting_gift (id, sender_id, recipient_email, recipient_wallet, recipient_index, amount, currency,
    message, status, hold, hold_until, attempts, last_error, last_published_at, next_attempt_at, delivered_at,
    created_at, updated_at)
SELECT gen_random_uuid(), s.user_id, r.email, '', r.idx, 1 + (g.i %% 150) + (g.i %% 100) / 100.0,
    (ARRAY['EUR', 'USD', 'GBP'])[1 + g.i %% 3], CASE WHEN g.i %% 4 = 0 THEN '' ELSE m.message END,
    CASE WHEN g.i %% 100 < 96 THEN 'delivered' WHEN g.i %% 100 < 98 THEN 'rejected' ELSE 'failed' END,
    '', NULL, CASE WHEN g.i %% 100 < 96 THEN 1 WHEN g.i %% 100 < 98 THEN 0 ELSE 6 END,
    CASE WHEN g.i %% 100 >= 98 THEN 'Delivery failed.' ELSE '' END,
    g.at, g.at, CASE WHEN g.i %% 100 < 96 THEN g.at + interval '3 seconds' END, g.at, g.at
FROM (
    SELECT i, now() - random() * make_interval(days => %s) AS at, floor(random() * 50000)::int AS recipient
    FROM generate_series(0, %s - 1) AS i
) AS g
JOIN growth_sender s ON s.n = g.i %% 200
JOIN growth_recipient r ON r.n = g.recipient
JOIN growth_message m ON m.n = g.i %% 300
"""
# The review queue's page: held gifts waiting for approval, one per sender, sent in the last hour.
INSERT_HELD = """
INSERT INTO gifting_gift (id, sender_id, recipient_email, recipient_wallet, recipient_index, amount, currency,
    message, status, hold, hold_until, attempts, last_error, last_published_at, next_attempt_at, delivered_at,
    created_at, updated_at)
SELECT gen_random_uuid(), s.user_id, r.email, '', r.idx, 600, 'EUR', '', 'held', 'approval', NULL, 0, '',
    NULL, g.at, NULL, g.at, g.at
FROM (
    SELECT i, now() - random() * interval '1 hour' AS at, floor(random() * 50000)::int AS recipient
    FROM generate_series(0, %s - 1) AS i
) AS g
JOIN growth_sender s ON s.n = g.i %% 200
JOIN growth_recipient r ON r.n = g.recipient
"""
INSERT_RISK = """
INSERT INTO fraud_riskassessment (gift_id, decision, score, signals, hold_tier, release_at,
    needs_recipient_verification, released_at, review_outcome, reviewed_by_id, reviewed_at, review_reason, created_at)
SELECT id,
    CASE status WHEN 'held' THEN 'hold' WHEN 'rejected' THEN 'reject' ELSE 'allow' END,
    CASE status WHEN 'held' THEN 40 WHEN 'rejected' THEN 100 ELSE 0 END,
    CASE status WHEN 'held' THEN
        '[{"rule": "high_value", "score": 40, "reason": "600.00 is at or above the approval threshold."}]'::jsonb
        ELSE '[]'::jsonb END,
    CASE status WHEN 'held' THEN 'approval' ELSE '' END, NULL, false, NULL, '', NULL, NULL, '', created_at
FROM gifting_gift
"""
INSERT_EVENTS = """
INSERT INTO gifting_giftevent (gift_id, type, at, actor_id, actor_label, request_id, details, chain_hash)
SELECT g.id, e.type, g.created_at + e.step * interval '1 second',
    CASE WHEN e.type = 'created' THEN g.sender_id END, e.label, '',
    CASE WHEN e.type = 'delivery_attempted' THEN '{{"attempt": 1}}'::jsonb ELSE '{{}}'::jsonb END, ''
FROM gifting_gift g
JOIN (VALUES {values}) AS e(status, step, type, label) ON e.status = g.status
"""


# --- Measuring ----------------------------------------------------------------------------------


def reviewer_cookie() -> tuple[str, str]:
    """(cookie name, session key) of a staff reviewer, logged in through a session in the shared database."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client

    reviewer = get_user_model().objects.create_user(username="growth-reviewer", password=None, is_staff=True)
    reviewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_giftreview", "review_gift"]))
    client = Client(HTTP_HOST=HOST)
    client.force_login(reviewer)
    return settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value


def gift_body(number: int) -> dict:
    emails = recipient_emails()
    return {
        "recipient_email": emails[(number * 7919) % RECIPIENTS],
        "amount": f"{1 + number % 150}.{number % 100:02d}",
        "currency": "EUR",
        "message": "Growth",
    }


def time_accept(stack: Stack, token: str, *, count: int, first: int) -> list[float]:
    """Milliseconds of `count` serial POSTs, each a new gift (a fresh Idempotency-Key)."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    times = []
    for number in range(first, first + count):
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        started = time.perf_counter()
        response = session.post(f"{stack.base_url}{GIFTS}", json=gift_body(number), headers=headers, timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 202:
            raise RuntimeError(f"POST {GIFTS} answered {response.status_code}: {response.text[:300]}")
    return times


def time_review(stack: Stack, cookie: tuple[str, str], *, count: int, held: int) -> list[float]:
    import requests

    session = requests.Session()
    session.cookies.set(*cookie)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(f"{stack.base_url}{REVIEW_QUEUE}", timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        rows = response.text.count('name="_selected_action"')
        if response.status_code != 200 or rows != held:
            raise RuntimeError(f"GET {REVIEW_QUEUE} answered {response.status_code} with {rows} rows, not {held}")
    return times


# --- EXPLAIN ------------------------------------------------------------------------------------


def captured_statements(request) -> list[tuple[str, tuple]]:
    """Every SQL statement (with its parameters) that `request()` runs on the default connection."""
    from django.db import connection

    statements = []

    def capture(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        request()
    return [(sql, params) for sql, params in statements if sql.lstrip().split(None, 1)[0].upper() in EXPLAINABLE]


EXPLAINABLE = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"}


def explain(statements: list[tuple[str, tuple]]) -> list[Plan]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement, all in one transaction that is rolled back."""
    from django.db import DatabaseError, connection, transaction

    plans = []
    with transaction.atomic():
        for sql, params in statements:
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                    plans.append(Plan(sql, "\n".join(row[0] for row in cursor.fetchall()), analyzed=True))
            except DatabaseError:  # e.g. the INSERT of a row that is there now: its plan without running it
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute("EXPLAIN " + sql, params)
                    plans.append(Plan(sql, "\n".join(row[0] for row in cursor.fetchall()), analyzed=False))
        transaction.set_rollback(True)
    return plans


def explain_requests(token: str, cookie: tuple[str, str], *, number: int) -> tuple[list[Plan], list[Plan]]:
    """The plans of one accepted POST and of one review page, run here through Django's test client."""
    from django.test import Client, override_settings

    api = Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION=f"Token {token}")

    def post() -> None:
        # Published inline, as in the request's own thread: so the publish's queries (run after
        # commit, in the web process's publisher thread when GIFT_PUBLISH_IN_BACKGROUND) are captured too.
        with override_settings(GIFT_PUBLISH_IN_BACKGROUND=False):
            response = api.post(
                GIFTS, gift_body(number), content_type="application/json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
            )
        if response.status_code != 202:
            raise RuntimeError(f"POST {GIFTS} through the test client answered {response.status_code}")

    admin = Client(HTTP_HOST=HOST)
    admin.cookies[cookie[0]] = cookie[1]

    def page() -> None:
        response = admin.get(REVIEW_QUEUE)
        if response.status_code != 200:
            raise RuntimeError(f"GET {REVIEW_QUEUE} through the test client answered {response.status_code}")

    post()  # warm: first-use queries (content types, permissions) are not per request
    accept = explain(captured_statements(post))
    page()
    review = explain(captured_statements(page))
    return accept, review


# --- The run ------------------------------------------------------------------------------------


def run_size(args, gifts: int) -> Size:
    result = Size(gifts=gifts)
    with Stack(sqs=args.sqs, senders=1, worker=False) as stack:
        sender_id, token = stack.senders_created[0]
        say(f"loading {gifts} gifts")
        started = time.monotonic()
        result.events = load_history(gifts=gifts, held=args.held, sender_id=sender_id)
        result.load_seconds = time.monotonic() - started
        say(f"loaded {gifts} gifts and {result.events} events in {result.load_seconds:.0f} s")
        cookie = reviewer_cookie()
        time_accept(stack, token, count=args.warm_up, first=0)
        time_review(stack, cookie, count=max(1, args.warm_up // 10), held=args.held)
        result.accept_ms = time_accept(stack, token, count=args.requests, first=args.warm_up)
        result.review_ms = time_review(stack, cookie, count=args.review_requests, held=args.held)
        say(
            f"{gifts}: accept p50 {statistics.median(result.accept_ms):.1f} ms, "
            f"review page p50 {statistics.median(result.review_ms):.1f} ms"
        )
        result.accept_plans, result.review_plans = explain_requests(token, cookie, number=args.warm_up + args.requests)
    return result


def sql_ms(plans: list[Plan]) -> float:
    """The database's own time for one request: less noisy on a shared machine than the wall clock."""
    return sum(plan.milliseconds or 0.0 for plan in plans)


def report(sizes: list[Size], *, sqs: str) -> str:
    lines = [
        f"growth: serial POST {GIFTS} and GET {REVIEW_QUEUE}, one client, SQS: {sqs}",
        f"{'gifts':>10} {'events':>10} {'load s':>7} {'accept p50':>11} {'p99 ms':>7} {'SQL ms':>7} "
        f"{'review p50':>11} {'p99 ms':>7} {'SQL ms':>7}",
    ]
    for size in sizes:
        lines.append(
            f"{size.gifts:10d} {size.events:10d} {size.load_seconds:7.0f} "
            f"{statistics.median(size.accept_ms):11.1f} {percentile(size.accept_ms, 0.99):7.1f} "
            f"{sql_ms(size.accept_plans):7.1f} {statistics.median(size.review_ms):11.1f} "
            f"{percentile(size.review_ms, 0.99):7.1f} {sql_ms(size.review_plans):7.1f}"
        )
    lines.append("SQL ms: the execution times of one request's statements under EXPLAIN ANALYZE, added up")
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        accept = statistics.median(large.accept_ms) / statistics.median(small.accept_ms)
        lines.append(
            f"ratio {large.gifts}/{small.gifts}: accept p50 {accept:.2f}x (target <= {ACCEPT_TARGET}x), "
            f"p99 {percentile(large.accept_ms, 0.99) / percentile(small.accept_ms, 0.99):.2f}x, "
            f"review page p50 {statistics.median(large.review_ms) / statistics.median(small.review_ms):.2f}x"
        )
    for size in sizes:
        for what, plans in (("one accepted POST", size.accept_plans), ("one review page", size.review_plans)):
            lines.append(f"EXPLAIN, {size.gifts} gifts, {what}: {len(plans)} statements")
            lines.extend(f"  {plan.summary()}" for plan in plans)
    return "\n".join(lines)


def explain_file(sizes: list[Size]) -> str:
    out = io.StringIO()
    for size in sizes:
        for what, plans in (("one accepted POST", size.accept_plans), ("one review page", size.review_plans)):
            for number, plan in enumerate(plans, start=1):
                kind = "EXPLAIN (ANALYZE, BUFFERS)" if plan.analyzed else "EXPLAIN (not run: it would collide)"
                out.write(f"=== {size.gifts} gifts, {what}, statement {number}: {kind}\n{plan.sql}\n\n")
                out.write(plan.text + "\n\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000", help="comma-separated counts of existing gifts")
    parser.add_argument("--requests", type=int, default=300, help="timed serial POSTs per size")
    parser.add_argument("--review-requests", type=int, default=30, help="timed review pages per size")
    parser.add_argument("--warm-up", type=int, default=30, help="untimed POSTs first")
    parser.add_argument("--held", type=int, default=50, help="gifts held for approval (the review page's rows)")
    parser.add_argument("--quick", action="store_true", help="1,000 and 5,000 gifts, 20 POSTs, 5 pages")
    add_stack_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.requests, args.review_requests, args.warm_up, args.held = "1000,5000", 20, 5, 5, 10
    sizes = [int(text.replace("_", "")) for text in args.sizes.split(",")]
    if min(sizes) < 1 or args.requests < 1 or args.review_requests < 1 or args.held < 1:
        parser.error("--sizes, --requests, --review-requests and --held must be positive")

    results = [run_size(args, gifts) for gifts in sizes]
    text = report(results, sqs=args.sqs)
    print(text, flush=True)
    (ROOT / "var").mkdir(exist_ok=True)
    (ROOT / "var" / "bench-growth.txt").write_text(text + "\n")
    (ROOT / "var" / "bench-growth-explain.txt").write_text(explain_file(results))
    say("plans in var/bench-growth-explain.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
