"""The admin's Operations page: who may see it, what it shows, and its chart (selector and SVG)."""

import re
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import pytest
from django.utils import timezone

from core.heartbeat import heartbeat_write
from gifting import ops_admin
from gifting.models import GiftEvent, GiftEventType, GiftStatus, HoldReason
from gifting.ops_chart import PLOT_HEIGHT, axis_top, bar_height, deliveries_svg, hourly_totals
from gifting.selectors import Bucket, deliveries_per_bucket, held_gift_counts
from tests.factories import gift_row

PAGE = "/admin/operations/"
SVG = "{http://www.w3.org/2000/svg}"
FIVE_MINUTES = timedelta(minutes=5)


@pytest.fixture
def staff(make_user):
    return make_user(username="olga", is_staff=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def fake_sqs(monkeypatch):
    """SQS as the page reads it: these depths per queue name (nothing listens on the test endpoint)."""
    depths = {
        "gift-delivery": {"visible": 4, "in_flight": 2, "delayed": 1},
        "gift-delivery-dlq": {"visible": 3, "in_flight": 0, "delayed": 0},
        "gift-maintenance": {"visible": 0, "in_flight": 0, "delayed": 0},
    }
    monkeypatch.setattr(ops_admin, "sqs_client", lambda: object())
    monkeypatch.setattr(ops_admin, "queue_depth", lambda client, queue: depths[queue])
    return depths


@pytest.fixture
def no_sqs(settings):
    settings.SQS_ENDPOINT_URL = "http://127.0.0.1:9"  # the discard port: nothing listens


@pytest.fixture
def heartbeats(settings, tmp_path):
    settings.WORKER_HEARTBEAT_DIR = tmp_path / "heartbeats"
    settings.WORKER_HEARTBEAT_STALE_AFTER = 60
    return settings.WORKER_HEARTBEAT_DIR


def event_at(gift, type_: str, at: datetime) -> GiftEvent:
    """An audit event recorded at `at`: `at` is auto_now_add, and the table refuses updates."""
    with patch("django.utils.timezone.now", return_value=at):
        event = GiftEvent.objects.create(gift=gift, type=type_, actor_label="worker")
    assert event.at == at
    return event


def floor_to_bucket(moment: datetime) -> datetime:
    return datetime.fromtimestamp(int(moment.timestamp()) // 300 * 300, tz=UTC)


def chart_of(page: str) -> ET.Element:
    [svg] = re.findall(r"<svg [^>]*id=\"deliveries-chart\".*?</svg>", page, flags=re.DOTALL)
    return ET.fromstring(svg)


def bars_of(svg: ET.Element) -> dict[str, dict[str, float]]:
    """Each bar's bucket start → the height of each of its segments (delivered, failed)."""
    return {
        bar.get("data-start"): {rect.get("class"): float(rect.get("height")) for rect in bar.iter(f"{SVG}rect")}
        for bar in svg.iter(f"{SVG}g")
        if bar.get("class") == "bar"
    }


# Who may see it


def test_staff_who_is_not_superuser_sees_every_section(staff_client, staff, fake_sqs, heartbeats):
    assert not staff.is_superuser

    response = staff_client.get(PAGE)

    assert response.status_code == 200
    page = response.content.decode()
    for section in ("Dead letters (DLQ)", "Queues", "Held gifts waiting", "Gifts by status", "Workers"):
        assert section in page
    assert "Deliveries and failures per 5 minutes, last 24 hours" in page
    assert (
        '<div class="breadcrumbs">' in page
        and ">Home</a> \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} Operations" in page
    )
    assert chart_of(page).get("role") == "img"


def test_superuser_sees_it(client, make_user, fake_sqs):
    client.force_login(make_user(username="root", is_staff=True, is_superuser=True))

    assert client.get(PAGE).status_code == 200


def test_anonymous_users_are_sent_to_the_admin_login(client):
    response = client.get(PAGE)

    assert response.status_code == 302
    assert response.url == f"/admin/login/?next={PAGE}"


def test_signed_in_users_who_are_not_staff_are_sent_to_the_admin_login(client, make_user):
    client.force_login(make_user(username="alice"))

    response = client.get(PAGE)

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


def test_the_admin_index_links_to_it(staff_client):
    page = staff_client.get("/admin/").content.decode()

    assert f'href="{PAGE}"' in page


# What it shows


def test_queue_depths_per_queue_and_the_dlq_count_in_red(staff_client, fake_sqs):
    page = staff_client.get(PAGE).content.decode()

    assert re.search(r'id="ops-dlq" class="ops-tile ops-alert".*?id="ops-dlq-count">3<', page, re.DOTALL)
    for name, cells in (("test-gift-delivery", (4, 2, 1)), ("test-gift-delivery-dlq", (3, 0, 0))):
        row = re.search(rf"<th scope=\"row\">{name}<br>.*?</tr>", page, re.DOTALL).group(0)
        assert re.findall(r'<td class="num">(\d+)</td>', row) == [str(n) for n in cells]
    assert "test-gift-maintenance" in page


def test_an_empty_dlq_is_not_red(staff_client, fake_sqs):
    fake_sqs["gift-delivery-dlq"]["visible"] = 0

    page = staff_client.get(PAGE).content.decode()

    assert 'id="ops-dlq" class="ops-tile">' in page and 'id="ops-dlq-count">0<' in page


def test_an_unreachable_sqs_is_said_and_the_rest_is_shown(staff_client, no_sqs, staff):
    gift_row(staff, status=GiftStatus.HELD, hold=HoldReason.APPROVAL)

    response = staff_client.get(PAGE)

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="ops-dlq-count">SQS unreachable<' in page
    assert "<strong>SQS unreachable</strong>" in page
    assert "Gifts by status" in page and "Deliveries and failures" in page


def test_held_gifts_by_why_and_gifts_by_status(staff_client, fake_sqs, make_user):
    sender = make_user(username="sam")
    for hold in (HoldReason.APPROVAL, HoldReason.APPROVAL, HoldReason.DELAY, HoldReason.RECIPIENT):
        extra = {"hold_until": timezone.now() + timedelta(hours=1)} if hold == HoldReason.DELAY else {}
        gift_row(sender, status=GiftStatus.HELD, hold=hold, **extra)
    gift_row(sender, status=GiftStatus.FAILED)
    with patch("django.utils.timezone.now", return_value=timezone.now() - timedelta(minutes=7, seconds=5)):
        gift_row(sender)  # queued, accepted 7 minutes ago

    page = staff_client.get(PAGE).content.decode()

    def count_in(section: str, label: str) -> int:
        block = re.search(rf'id="{section}".*?</table>', page, re.DOTALL).group(0)
        return int(re.search(rf"{re.escape(label)}</th>\s*<td class=\"num\">(\d+)</td>", block).group(1))

    assert count_in("ops-held", "Waiting for a reviewer's approval".replace("'", "&#x27;")) == 2
    assert count_in("ops-held", "In a hold period (released automatically)") == 1
    assert count_in("ops-held", "Waiting for the recipient to confirm") == 1
    assert count_in("ops-statuses", "Held") == 4
    assert count_in("ops-statuses", "Queued") == 1
    assert count_in("ops-statuses", "Failed") == 1
    assert count_in("ops-statuses", "Delivered") == 0
    assert re.search(r'<span class="ops-number">7 min \d s</span>', page)  # the oldest queued gift's age


def test_held_gift_counts_tells_the_holds_apart(make_user):
    sender = make_user()
    gift_row(sender, status=GiftStatus.HELD, hold=HoldReason.RECIPIENT)
    gift_row(sender, status=GiftStatus.HELD, hold=HoldReason.RECIPIENT)
    gift_row(sender, status=GiftStatus.HELD, hold=HoldReason.APPROVAL)
    gift_row(sender)

    assert held_gift_counts() == {"approval": 1, "delay": 0, "recipient": 2}


def test_workers_heartbeats_fresh_and_stale(staff_client, fake_sqs, heartbeats):
    heartbeat_write(hostname="celery@fresh-host", pid=101, now=time.time() - 5)
    heartbeat_write(hostname="celery@stuck-host", pid=202, now=time.time() - 600)

    page = staff_client.get(PAGE).content.decode()

    rows = dict(re.findall(r'<th scope="row">(celery@[\w-]+)</th>.*?<td>(.*?)</td>', page, re.DOTALL))
    assert rows == {
        "celery@fresh-host": '<span class="ops-ok">fresh</span>',
        "celery@stuck-host": '<span class="ops-stale">stale</span>',
    }
    assert "10 min 0 s ago" in page or "10 min 1 s ago" in page
    assert '<span class="ops-number">1 / 2</span>' in page


def test_no_personal_data_on_the_page(staff_client, fake_sqs, make_user):
    sender = make_user(username="sam")
    gift = gift_row(
        sender,
        recipient_email="secret.person@example.com",
        message="a private note",
        status=GiftStatus.DELIVERED,
        delivered_at=timezone.now(),
    )
    event_at(gift, GiftEventType.DELIVERED, timezone.now())
    gift_row(sender, recipient_email="", recipient_wallet="0x52908400098527886E0F7030069857D2E4169EE7")

    page = staff_client.get(PAGE).content.decode()

    for secret in ("secret.person", "private note", "0x52908400098527886E0F7030069857D2E4169EE7", str(gift.id)):
        assert secret not in page


# The chart


def test_the_chart_has_one_bar_per_non_empty_bucket_with_heights_from_the_events(staff_client, fake_sqs, staff):
    delivered = gift_row(staff, status=GiftStatus.DELIVERED, delivered_at=timezone.now())
    failed = gift_row(staff, status=GiftStatus.FAILED)
    base = floor_to_bucket(timezone.now()) - timedelta(hours=3)
    for seconds in (10, 70, 299):
        event_at(delivered, GiftEventType.DELIVERED, base + timedelta(seconds=seconds))
    event_at(failed, GiftEventType.FAILED, base + FIVE_MINUTES + timedelta(seconds=1))
    earlier = base - timedelta(hours=2)
    event_at(delivered, GiftEventType.DELIVERED, earlier + timedelta(seconds=30))
    event_at(failed, GiftEventType.FAILED, earlier + timedelta(seconds=40))
    event_at(failed, GiftEventType.FAILED, earlier + timedelta(seconds=50))
    event_at(delivered, GiftEventType.CREATED, base)  # not a delivery: not counted
    event_at(delivered, GiftEventType.DELIVERED, timezone.now() - timedelta(hours=25))  # outside the window

    page = staff_client.get(PAGE).content.decode()

    top, _ = axis_top(3)
    assert top == 3
    assert bars_of(chart_of(page)) == {
        base.isoformat(): {"delivered": PLOT_HEIGHT},
        (base + FIVE_MINUTES).isoformat(): {"failed": bar_height(1, top)},
        earlier.isoformat(): {"delivered": bar_height(1, top), "failed": bar_height(2, top)},
    }
    assert "4 delivered and 3 failed between" in page  # the SVG's <desc>
    assert "Delivered (4)" in page and "Failed (3)" in page  # the legend
    table = re.search(r"<details>.*?</details>", page, re.DOTALL).group(0)
    assert f'{earlier:%Y-%m-%d %H}:00</td><td class="num">1</td><td class="num">2</td>' in table


def test_deliveries_per_bucket_counts_both_types_in_aligned_buckets(make_user):
    gift = gift_row(make_user())
    since = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    until = since + timedelta(minutes=20)
    event_at(gift, GiftEventType.DELIVERED, since - timedelta(seconds=1))  # before: left out
    event_at(gift, GiftEventType.DELIVERED, since)  # since is included
    event_at(gift, GiftEventType.DELIVERED, since + timedelta(minutes=4, seconds=59))
    event_at(gift, GiftEventType.FAILED, since + timedelta(minutes=5))
    event_at(gift, GiftEventType.RETRY_SCHEDULED, since + timedelta(minutes=6))
    event_at(gift, GiftEventType.FAILED, until - timedelta(microseconds=1))
    event_at(gift, GiftEventType.DELIVERED, until)  # until is excluded

    buckets = deliveries_per_bucket(since=since, until=until)

    assert buckets == [
        Bucket(start=since, delivered=2, failed=0),
        Bucket(start=since + FIVE_MINUTES, delivered=0, failed=1),
        Bucket(start=since + 2 * FIVE_MINUTES, delivered=0, failed=0),
        Bucket(start=since + 3 * FIVE_MINUTES, delivered=0, failed=1),
    ]


def test_deliveries_per_bucket_covers_a_day_in_288_buckets_from_an_unaligned_start(db):
    until = datetime(2030, 1, 2, 0, 0, tzinfo=UTC)

    assert len(deliveries_per_bucket(since=until - timedelta(hours=24), until=until)) == 288
    buckets = deliveries_per_bucket(since=until - timedelta(minutes=7), until=until - timedelta(minutes=1))
    assert [b.start for b in buckets] == [until - 2 * FIVE_MINUTES, until - FIVE_MINUTES]
    with pytest.raises(ValueError):
        deliveries_per_bucket(since=until - timedelta(hours=1), until=until, bucket_seconds=90)


def test_the_view_charts_24_hours_of_whole_buckets_ending_after_now():
    now = datetime(2030, 1, 1, 12, 3, 20, tzinfo=UTC)

    since, until = ops_admin.chart_window(now)

    assert until == datetime(2030, 1, 1, 12, 5, tzinfo=UTC)
    assert since == until - timedelta(hours=24)


# The SVG, as a pure function


def day_of_buckets(**counts: tuple[int, int]) -> list[Bucket]:
    """288 five-minute buckets from 2030-01-01 00:00 UTC; counts={"HHMM": (delivered, failed)}."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    buckets = []
    for index in range(288):
        moment = start + index * FIVE_MINUTES
        delivered, failed = counts.get(f"t{moment:%H%M}", (0, 0))
        buckets.append(Bucket(start=moment, delivered=delivered, failed=failed))
    return buckets


def test_svg_is_well_formed_accessible_and_labels_the_hours():
    svg = ET.fromstring(deliveries_svg(day_of_buckets(t0100=(5, 0), t1330=(2, 3))))

    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}title").text == "Deliveries and failures per 5 minutes, last 24 hours (UTC)"
    assert "7 delivered and 3 failed" in svg.find(f"{SVG}desc").text
    hours = [text.text for text in svg.iter(f"{SVG}text") if text.get("class") == "hour"]
    assert hours == [f"{hour:02d}:00" for hour in range(0, 24, 2)]
    assert len([line for line in svg.iter(f"{SVG}line") if line.get("class") == "tick"]) == 24
    assert bars_of(svg) == {
        "2030-01-01T01:00:00+00:00": {"delivered": PLOT_HEIGHT},
        "2030-01-01T13:30:00+00:00": {"delivered": bar_height(2, 5), "failed": bar_height(3, 5)},
    }
    legend = [text.text for text in svg.iter(f"{SVG}text")]
    assert "Delivered (7)" in legend and "Failed (3)" in legend


def test_svg_bars_stack_failed_on_top_of_delivered():
    svg = ET.fromstring(deliveries_svg(day_of_buckets(t1330=(2, 3))))
    [bar] = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "bar"]
    delivered, failed = bar.iter(f"{SVG}rect")

    assert float(delivered.get("y")) + float(delivered.get("height")) == pytest.approx(
        float(svg.find(f"{SVG}line").get("y1"))  # the baseline (the gridline of 0)
    )
    assert float(failed.get("y")) + float(failed.get("height")) == pytest.approx(float(delivered.get("y")))
    assert bar.find(f"{SVG}title").text == "13:30 to 13:35 UTC: 2 delivered, 3 failed"


def test_an_empty_chart_says_so():
    svg = ET.fromstring(deliveries_svg(day_of_buckets()))

    assert not [g for g in svg.iter(f"{SVG}g") if g.get("class") == "bar"]
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "empty"] == [
        "No deliveries or failures in this period"
    ]


def test_svg_escapes_its_text():
    markup = deliveries_svg(day_of_buckets(), title='<script>alert("x")</script> & co', element_id='a"b')

    assert "<script>" not in markup and 'id="a"b"' not in markup
    assert ET.fromstring(markup).find(f"{SVG}title").text == '<script>alert("x")</script> & co'


@pytest.mark.parametrize(
    ("busiest", "expected"),
    [
        (0, (1, 1)),
        (1, (1, 1)),
        (3, (3, 1)),
        (5, (5, 1)),
        (7, (8, 2)),
        (23, (25, 5)),
        (60, (60, 20)),
        (999, (1000, 200)),
    ],
)
def test_the_y_axis_ends_on_a_round_number(busiest, expected):
    assert axis_top(busiest) == expected


def test_hourly_totals_add_up_the_buckets_of_each_hour():
    totals = hourly_totals(day_of_buckets(t0100=(5, 0), t0155=(1, 1), t1330=(2, 3)))

    assert [(t.hour.hour, t.delivered, t.failed) for t in totals] == [(1, 6, 1), (13, 2, 3)]
