"""The offline evaluation of operations anomaly detection, small: bench/evaluate_ops_anomalies.py on 10 days."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "anomaly-detection.md"


def test_the_evaluation_writes_its_tables_into_the_operations_section_only(tmp_path):
    doc = tmp_path / "anomaly-detection.md"
    doc.write_text(DOC.read_text() + "\nlast line stays\n")
    fraud_before = doc.read_text().split("## Fraud:", 1)[1]
    args = ["--days", "10", "--incidents-per-type", "1", "--skip-river", "--doc", str(doc)]

    result = subprocess.run(
        [sys.executable, "bench/evaluate_ops_anomalies.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    text = doc.read_text()
    operations = text.split("## Operations:", 1)[1].split("## Fraud:", 1)[0]
    for row in ("| fixed ALERT_* rules |", "| robust baseline |", "| rules + robust baseline |"):
        assert [line for line in operations.splitlines() if line.startswith(row)], row  # one summary row each
        assert row in result.stdout
    for kind in ("smtp_outage", "worker_stall", "dlq_flood", "traffic_drop", "slow_ramp"):
        assert f"| {kind} | " in operations
    assert "| recall | precision | false alarms / day |" in operations
    assert text.split("## Fraud:", 1)[1] == fraud_before
    assert text.startswith("# Anomaly detection")


def test_the_evaluation_refuses_a_data_set_shorter_than_its_warm_up():
    result = subprocess.run(
        [sys.executable, "bench/evaluate_ops_anomalies.py", "--days", "7", "--no-doc"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "--days must be over 8" in result.stderr
