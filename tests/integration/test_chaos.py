"""The chaos run, small: bench/chaos.py with 200 gifts, 10 clients, two worker kills and one SQS restart.

The script starts its own SQS server, SMTP sink, web, workers and beat on free
loopback ports, in its own database on this test run's PostgreSQL server, and
exits 0 only when every invariant held. Its report is printed (pytest -s, or on failure).
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
SMALL_RUN = ["--gifts", "200", "--clients", "10", "--kills", "2", "--sqs-restarts", "1"]
TIMEOUT = 300  # seconds; the run itself takes about a minute and a half on two cores

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the chaos run kills PostgreSQL connections; SQLite has none"
    ),
]


def chaos_database_url() -> str:
    """A database of its own for the run (created and dropped by it), on this test run's server."""
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/chaos_test_{os.getpid()}"


def run_chaos(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run the script; past TIMEOUT, SIGTERM it so it stops what it started (SIGKILL would orphan them)."""
    process = subprocess.Popen(
        [sys.executable, "bench/chaos.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=90)
        stderr += f"\n(stopped after {TIMEOUT} s)"
    return process.returncode, stdout, stderr


def test_small_chaos_run_keeps_every_invariant(tmp_path):
    report = tmp_path / "chaos-report.txt"
    env = {**os.environ, "CHAOS_DATABASE_URL": chaos_database_url()}

    status, stdout, stderr = run_chaos(*SMALL_RUN, "--report", str(report), env=env)

    print(stdout)
    assert status == 0, f"chaos run exited with {status}:\n{stdout[-6000:]}\n{stderr[-4000:]}"
    assert "result: all invariants held" in report.read_text()
