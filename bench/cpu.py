"""CPU time by part of the stack, read from /proc: where a benchmark's cycles go.

Each process the stack starts runs in a session (and process group) of its own
(chaos_lib.Process), so a part's CPU is the sum over the processes of its
group: gunicorn's master and workers, Celery's and its pool's. PostgreSQL and
Redis are the machine's, found by name: on a shared machine they also count
what others make them do, which the report says.
"""

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessTimes:
    pid: int
    name: str
    group: int
    seconds: float  # user + system, including children already waited for


def _read(stat_path: Path) -> ProcessTimes | None:
    try:
        text = stat_path.read_text()
    except OSError:  # gone since the listing
        return None
    # The name is in parentheses and may hold spaces; the fields after it are space-separated.
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return ProcessTimes(
        pid=int(stat_path.parent.name),
        name=name,
        group=int(fields[2]),
        seconds=(utime + stime + cutime + cstime) / CLOCK_TICKS,
    )


def all_processes() -> list[ProcessTimes]:
    found = (_read(path) for path in Path("/proc").glob("[0-9]*/stat"))
    return [times for times in found if times is not None]


def cpu_seconds(groups: dict[str, int], names: dict[str, str]) -> dict[str, float]:
    """CPU seconds so far of each part: `groups` part → process group id, `names` part → process name."""
    processes = all_processes()
    totals = {part: 0.0 for part in [*groups, *names]}
    for times in processes:
        for part, group in groups.items():
            if times.group == group:
                totals[part] += times.seconds
        for part, name in names.items():
            if times.name == name:
                totals[part] += times.seconds
    this = os.times()
    totals["bench process"] = this.user + this.system
    return totals


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {part: after[part] - before.get(part, 0.0) for part in after}
