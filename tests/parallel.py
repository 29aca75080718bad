"""Resources of their own for each process of a parallel run (`make test` runs pytest-xdist's `-n $(TEST_WORKERS)`, 3).

Each worker process of the run gets its own SQS and SMTP ports, Redis database, metrics and heartbeat
directories, shifted from the ones this run was given (pyproject.toml's test environment, or the caller's):
two processes sharing them would read each other's messages and clear each other's rate-limit counts.
Test databases need nothing here: pytest-django names them per worker (`_gw0`, `_gw1`).
"""

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PORT_STEP = 100  # worker 1's SQS server on 9426 when the run's is on 9326, worker 2's on 9526
REDIS_DATABASES = 16  # Redis's default


def _shift_port(url: str, by: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{parts.port + by}"))


def _shift_redis_database(url: str, by: int) -> str:
    parts = urlsplit(url)
    database = int(parts.path.lstrip("/") or 0) + by
    if database >= REDIS_DATABASES:
        raise ValueError(f"REDIS_URL {url!r}: no Redis database {database} for parallel worker {by}")
    return urlunsplit(parts._replace(path=f"/{database}"))


def worker_environment(number: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables worker `number` (1, 2, …) of a parallel run sets over the run's own `environ`."""
    name = f"worker-{number}"
    shifted = {
        "SQS_ENDPOINT_URL": _shift_port(environ["SQS_ENDPOINT_URL"], number * PORT_STEP),
        "EMAIL_URL": _shift_port(environ["EMAIL_URL"], number * PORT_STEP),
        "PROMETHEUS_MULTIPROC_DIR": str(Path(environ["PROMETHEUS_MULTIPROC_DIR"]) / name),
        "WORKER_HEARTBEAT_DIR": str(Path(environ.get("WORKER_HEARTBEAT_DIR", "var/heartbeats")) / name),
    }
    if environ.get("REDIS_URL"):  # unset: each process has its own local-memory cache anyway
        shifted["REDIS_URL"] = _shift_redis_database(environ["REDIS_URL"], number)
    return shifted
