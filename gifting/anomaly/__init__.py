"""Anomaly detection on the pipeline's 5-minute series (issue 10, point 3a; docs/anomaly-detection.md).

`detector` is the pure statistics (no Django: the offline evaluation in
bench/evaluate_ops_anomalies.py runs it on generated data); `watch` feeds it
the closed buckets from the monitoring beat task and raises the ALERTs.
"""
