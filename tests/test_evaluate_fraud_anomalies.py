"""The fraud anomaly evaluation, small: bench/evaluate_fraud_anomalies.py on a few hundred senders."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "evaluate_fraud_anomalies.py"
DOC = """# Anomaly detection

## Operations: anomalies in the pipeline's 5-minute series

Someone else's words.

## Fraud: a per-sender anomaly score

Before.

<!-- fraud-evaluation:start -->
stale figures
<!-- fraud-evaluation:end -->

After.
"""


def run(*args: str) -> str:
    env = {**os.environ, "DJANGO_DEBUG": "true"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--senders", "300", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_evaluation_reports_precision_and_recall_of_each_detector_into_its_section(tmp_path):
    doc = tmp_path / "anomaly-detection.md"
    doc.write_text(DOC)

    output = run("--seed", "3", "--doc", str(doc))

    for row in ("(a) fixed rules alone (today)", "(c') at the shipped setting"):
        assert re.search(rf"^\| {re.escape(row)} \| [^|]+ \| \d+ \| [\d.]+ % \| [\d.]+ % \|$", output, re.M), row
    for pattern in ("takeover", "slow_ramp", "mule", "burst", "new_account"):
        assert re.search(rf"^\| {pattern} \| \d+ \|( [\d.]+ % \|)+$", output, re.M), pattern
    assert re.search(r"^\| 5 \| [\d.]+ % \| [\d.]+ % \| [\d.]+ % \| [\d.]+ % \|$", output, re.M)
    assert re.search(r"^Verdict: .*(keep|drop|adds nothing)", output, re.M)

    written = doc.read_text()
    assert "stale figures" not in written
    assert "(a) fixed rules alone (today)" in written
    before, figures = written.split("<!-- fraud-evaluation:start -->")
    assert before == DOC.split("<!-- fraud-evaluation:start -->")[0]  # the rest of the doc is untouched
    assert figures.endswith("<!-- fraud-evaluation:end -->\n\nAfter.\n")


def test_the_evaluation_is_deterministic_for_a_seed():
    assert run("--seed", "5", "--no-doc") == run("--seed", "5", "--no-doc")
