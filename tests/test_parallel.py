"""A parallel run's resources (tests/parallel.py): each worker process its own ports, Redis database and directories."""

import pytest

from tests.parallel import worker_environment

RUN = {
    "SQS_ENDPOINT_URL": "http://127.0.0.1:9326",
    "EMAIL_URL": "smtp://127.0.0.1:2526",
    "PROMETHEUS_MULTIPROC_DIR": "var/test-metrics",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def test_each_worker_shifts_the_runs_resources_to_its_own():
    first, second = worker_environment(1, RUN), worker_environment(2, RUN)

    assert first == {
        "SQS_ENDPOINT_URL": "http://127.0.0.1:9426",
        "EMAIL_URL": "smtp://127.0.0.1:2626",
        "PROMETHEUS_MULTIPROC_DIR": "var/test-metrics/worker-1",
        "WORKER_HEARTBEAT_DIR": "var/heartbeats/worker-1",
        "REDIS_URL": "redis://127.0.0.1:6379/1",
    }
    assert all(first[name] != second[name] for name in first)


def test_a_run_without_redis_leaves_it_unset_and_a_database_past_redis_s_last_is_refused():
    assert "REDIS_URL" not in worker_environment(1, {**RUN, "REDIS_URL": ""})
    assert worker_environment(2, {**RUN, "REDIS_URL": "redis://127.0.0.1:6379"})["REDIS_URL"].endswith("/2")
    with pytest.raises(ValueError, match="no Redis database 16"):
        worker_environment(3, {**RUN, "REDIS_URL": "redis://127.0.0.1:6379/13"})
