"""The Operations page's chart: deliveries and failures per time bucket, drawn on the server as inline SVG.

Pure functions of the buckets (gifting.selectors.deliveries_per_bucket): no
database, no JavaScript, no files. Every piece of text is escaped; the markup
is well-formed XML, so it can be parsed back (the tests do).

One stacked bar per non-empty bucket: `delivered` from the baseline, `failed`
on top, as a `<g class="bar">` with a tooltip `<title>` and `data-` attributes.
The y axis runs from 0 to a round number at or above the busiest bucket.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Protocol

WIDTH = 1200
HEIGHT = 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 40, 40  # margins around the plot: y labels, legend, x labels
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM
DELIVERED_COLOUR = "#2e7d32"
FAILED_COLOUR = "#ba2121"


class BucketLike(Protocol):
    start: datetime
    delivered: int
    failed: int


@dataclass(frozen=True)
class HourTotals:
    hour: datetime
    delivered: int
    failed: int


def axis_top(busiest: int) -> tuple[int, int]:
    """(top of the y axis, step between its gridlines): a 1-2-5 step, at most five steps, top ≥ busiest."""
    busiest = max(busiest, 1)
    magnitude = 10 ** max(math.floor(math.log10(busiest / 5)), 0) if busiest > 5 else 1
    for multiple in (1, 2, 5, 10):
        step = multiple * magnitude
        if busiest <= 5 * step:
            return math.ceil(busiest / step) * step, step
    raise AssertionError("unreachable: ten times the magnitude always fits")


def bar_height(count: int, top: int) -> float:
    """Height in SVG units of `count` events on an axis topped at `top` (rounded to 0.01, as drawn)."""
    return round(count * PLOT_HEIGHT / top, 2)


def hourly_totals(buckets: Sequence[BucketLike]) -> list[HourTotals]:
    """Deliveries and failures per clock hour, non-empty hours only, oldest first: the chart as a table."""
    hours: dict[datetime, list[int]] = {}
    for bucket in buckets:
        if bucket.delivered or bucket.failed:
            tally = hours.setdefault(bucket.start.replace(minute=0, second=0, microsecond=0), [0, 0])
            tally[0] += bucket.delivered
            tally[1] += bucket.failed
    return [HourTotals(hour=hour, delivered=d, failed=f) for hour, (d, f) in hours.items()]


def deliveries_svg(
    buckets: Sequence[BucketLike],
    *,
    bucket_seconds: int = 300,
    title: str = "Deliveries and failures per 5 minutes, last 24 hours (UTC)",
    element_id: str = "deliveries-chart",
) -> str:
    """The chart as an `<svg>` element: bars, hour labels on the x axis, counts on the y axis, a legend."""
    delivered_total = sum(b.delivered for b in buckets)
    failed_total = sum(b.failed for b in buckets)
    top, step = axis_top(max((b.delivered + b.failed for b in buckets), default=0))
    slot = PLOT_WIDTH / max(len(buckets), 1)
    bar_width = round(max(slot * 0.8, 1.0), 2)
    baseline = TOP + PLOT_HEIGHT
    span = bucket_seconds // 60
    description = _describe(buckets, delivered_total, failed_total, bucket_seconds)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{_e(element_id)}" class="ops-chart" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" preserveAspectRatio="xMidYMid meet" '
        f'aria-labelledby="{_e(element_id)}-title" aria-describedby="{_e(element_id)}-desc" '
        f'font-family="sans-serif" font-size="12" fill="currentColor">',
        f'<title id="{_e(element_id)}-title">{_e(title)}</title>',
        f'<desc id="{_e(element_id)}-desc">{_e(description)}</desc>',
    ]
    # The y axis: gridlines and counts.
    for value in range(0, top + 1, step):
        y = baseline - bar_height(value, top)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{_r(y)}" x2="{WIDTH - RIGHT}" y2="{_r(y)}" '
            f'stroke="currentColor" stroke-opacity="{0.5 if value == 0 else 0.15}"/>'
        )
        parts.append(f'<text x="{LEFT - 8}" y="{_r(y + 4)}" text-anchor="end">{value}</text>')
    parts.append(
        f'<text x="14" y="{_r(TOP + PLOT_HEIGHT / 2)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_r(TOP + PLOT_HEIGHT / 2)})">per {span} min</text>'
    )
    # The x axis: a tick at each full hour, labelled every other hour.
    for index, bucket in enumerate(buckets):
        start = bucket.start
        if start.minute == 0 and start.second == 0:
            x = _r(LEFT + index * slot)
            parts.append(
                f'<line class="tick" x1="{x}" y1="{baseline}" x2="{x}" y2="{baseline + 5}" stroke="currentColor"/>'
            )
            if start.hour % 2 == 0:
                parts.append(
                    f'<text class="hour" x="{x}" y="{baseline + 18}" text-anchor="middle">{start:%H:00}</text>'
                )
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end" fill-opacity="0.7">hour (UTC)</text>')
    # The bars.
    for index, bucket in enumerate(buckets):
        if not (bucket.delivered or bucket.failed):
            continue
        x = _r(LEFT + index * slot + (slot - bar_width) / 2)
        end = bucket.start + timedelta(seconds=bucket_seconds)
        label = f"{bucket.start:%H:%M} to {end:%H:%M} UTC: {bucket.delivered} delivered, {bucket.failed} failed"
        parts.append(
            f'<g class="bar" data-start="{_e(bucket.start.isoformat())}" '
            f'data-delivered="{bucket.delivered}" data-failed="{bucket.failed}"><title>{_e(label)}</title>'
        )
        y = float(baseline)
        for kind, count, colour in (
            ("delivered", bucket.delivered, DELIVERED_COLOUR),
            ("failed", bucket.failed, FAILED_COLOUR),
        ):
            if count:
                height = bar_height(count, top)
                y -= height
                parts.append(
                    f'<rect class="{kind}" x="{x}" y="{_r(y)}" width="{bar_width}" height="{height}" fill="{colour}"/>'
                )
        parts.append("</g>")
    if not (delivered_total or failed_total):
        parts.append(
            f'<text class="empty" x="{_r(LEFT + PLOT_WIDTH / 2)}" y="{_r(TOP + PLOT_HEIGHT / 2)}" '
            f'text-anchor="middle" fill-opacity="0.7">No deliveries or failures in this period</text>'
        )
    # The legend, above the plot.
    for offset, (name, total, colour) in enumerate(
        (("Delivered", delivered_total, DELIVERED_COLOUR), ("Failed", failed_total, FAILED_COLOUR))
    ):
        x = LEFT + offset * 170
        parts.append(f'<rect class="legend" x="{x}" y="12" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 18}" y="22">{_e(name)} ({total})</text>')
    parts.append("</svg>")
    return "".join(parts)


def _describe(buckets: Sequence[BucketLike], delivered: int, failed: int, bucket_seconds: int) -> str:
    """The chart in one sentence, for screen readers."""
    if not buckets:
        return "No data."
    first = buckets[0].start
    last = buckets[-1].start + timedelta(seconds=bucket_seconds)
    sentence = f"{delivered} delivered and {failed} failed between {first:%Y-%m-%d %H:%M} and {last:%H:%M} UTC."
    busiest = max(buckets, key=lambda b: b.delivered + b.failed)
    if busiest.delivered + busiest.failed:
        sentence += (
            f" Busiest {bucket_seconds // 60} minutes from {busiest.start:%H:%M}: "
            f"{busiest.delivered} delivered, {busiest.failed} failed."
        )
    return sentence


def _e(text: str) -> str:
    return escape(str(text), quote=True)


def _r(number: float) -> str:
    """A coordinate as drawn: at most two decimals, no trailing zeros."""
    return f"{round(number, 2):g}"
