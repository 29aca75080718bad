"""Worker heartbeats and `manage.py worker_health`, the liveness probe, against a real worker process."""

import os
import signal
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from tests.integration.conftest import ROOT
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

STALE_AFTER = 3


@pytest.fixture
def heartbeats(settings, tmp_path):
    settings.WORKER_HEARTBEAT_DIR = tmp_path / "heartbeats"
    settings.WORKER_HEARTBEAT_STALE_AFTER = STALE_AFTER
    return settings.WORKER_HEARTBEAT_DIR


def healthy() -> bool:
    try:
        call_command("worker_health")
    except CommandError:
        return False
    return True


def probe_exit_code(heartbeats) -> subprocess.CompletedProcess:
    """The probe as a container runs it: a process whose exit code is the answer."""
    env = {**os.environ, "WORKER_HEARTBEAT_DIR": str(heartbeats), "WORKER_HEARTBEAT_STALE_AFTER": str(STALE_AFTER)}
    command = [sys.executable, "manage.py", "worker_health"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_probe_follows_the_worker_loop_alive_frozen_and_gone(sqs, start_worker, heartbeats):
    worker = start_worker(WORKER_HEARTBEAT_DIR=str(heartbeats), WORKER_HEARTBEAT_INTERVAL="1")
    wait_until(healthy, timeout=30, message="no fresh heartbeat")
    alive = probe_exit_code(heartbeats)
    assert alive.returncode == 0
    assert f"pid={worker.process.pid}" in alive.stdout

    os.kill(worker.process.pid, signal.SIGSTOP)  # the process is there, its loop is not turning
    try:
        wait_until(lambda: not healthy(), timeout=30, message="a frozen loop looked alive")
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)
    wait_until(healthy, timeout=30, message="no heartbeat after thawing")

    worker.stop()
    wait_until(lambda: not healthy(), timeout=30, message="a stopped worker looked alive")
    gone = probe_exit_code(heartbeats)
    assert gone.returncode == 1
    assert "no heartbeat from any worker" in gone.stderr


def test_the_probe_fails_without_any_heartbeat_and_refuses_a_bad_max_age(heartbeats):
    assert not healthy()
    with pytest.raises(CommandError, match="--max-age must be at least 1 second"):
        call_command("worker_health", "--max-age", "0")
