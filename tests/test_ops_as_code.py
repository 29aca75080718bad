"""Alerts and dashboards as code: ops/prometheus/ and ops/grafana/ stay valid and name only metrics the code exports.

promtool (Debian's `prometheus` package; `make test` runs bin/ensure-promtool first) checks the rules and runs
their unit tests; the cross-check collects the metric names gifting.instruments and gifting.metrics export
and fails on any other name in an alert or a dashboard panel, so a renamed metric cannot leave a silent panel
or an alert that never fires.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gifting import instruments
from gifting.metrics import GiftCollector

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "ops" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "gift-a-voucher.json"
README = ROOT / "README.md"

# PromQL words that look like metric names: functions, aggregations, operators and modifiers.
PROMQL_WORDS = frozenset(
    """
    abs absent absent_over_time and avg avg_over_time bool bottomk by ceil changes clamp clamp_max clamp_min
    count count_over_time count_values delta deriv exp floor group group_left group_right histogram_quantile
    idelta ignoring increase irate label_join label_replace last_over_time le ln log2 log10 max max_over_time min
    min_over_time offset on or predict_linear quantile quantile_over_time rate resets round scalar sort
    sort_desc sqrt stddev stdvar sum sum_over_time time timestamp topk unless vector without
    """.split()
)
# An identifier (not inside a number, a label set or a Grafana variable) followed by `{`, `[`, `)`,
# whitespace or the end of the expression.
IDENTIFIER = re.compile(r"(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?=\s*[{\[)]|\s|$)")
# Grouping clauses name labels, not metrics: `by (le, channel)`, `on ()`, `ignoring (x)`, `group_left (y)`.
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (matcher values)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = GROUPING.sub(r"\1 ()", expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # range and subquery durations
    return {name for name in IDENTIFIER.findall(expr) if name not in PROMQL_WORDS}


def exported_metric_names() -> set[str]:
    """Every series name /metrics can hold: the processes' instruments and the scrape-time collector's gauges."""
    names = set()
    for value in vars(instruments).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        if value._type == "counter":
            names.add(value._name + "_total")
        elif value._type == "histogram":
            names.update(value._name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(value._name)
    names.update(family.name for family in GiftCollector().collect())
    return names


def unknown_metric_names(exprs: dict[str, str], exported: set[str]) -> dict[str, list[str]]:
    """Where → the metric names its expression reads that nothing exports."""
    unknown = {}
    for where, expr in exprs.items():
        missing = sorted(promql_metric_names(expr) - exported)
        if missing:
            unknown[where] = missing
    return unknown


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows keep theirs inside
    return panels


def panel_exprs() -> dict[str, str]:
    return {
        f"panel {panel['title']!r} {target['refId']}": target["expr"]
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
    }


def alert_exprs() -> dict[str, str]:
    return {f"alert {rule['alert']}": rule["expr"] for rule in alert_rules()}


@pytest.fixture
def exported(db, settings) -> set[str]:
    settings.SQS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens: the collector reports sqs_up 0
    return exported_metric_names()


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        pytest.fail(
            "promtool is not on PATH: run bin/ensure-promtool (as root it installs Debian's 'prometheus' package), "
            "or install promtool yourself. `make test` runs bin/ensure-promtool first."
        )
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_alert_rules_are_valid():
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_pass_their_unit_tests():
    result = promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not():
    cases = [case for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"] for case in test["alert_rule_test"]]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case.get("exp_alerts") for case in mine), f"no test fires {rule['alert']}"
        assert any(not case.get("exp_alerts") for case in mine), f"no test keeps {rule['alert']} quiet"


def test_every_alert_says_how_long_how_bad_what_and_where_to_look():
    anchors = readme_anchors()
    for rule in alert_rules():
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        document, _, anchor = annotations["runbook_url"].partition("#")
        assert document == "README.md" and anchor in anchors, f"{rule['alert']}: no README section #{anchor}"


def readme_anchors() -> set[str]:
    """The fragments GitHub gives README.md's headings (lines in code blocks are not headings)."""
    anchors, in_code = set(), False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (heading := re.match(r"#{1,6} (.+)", line)):
            anchors.add(re.sub(r"[^\w\- ]", "", heading[1].strip().lower()).replace(" ", "-"))
    return anchors


def test_the_dashboard_panels_are_valid_promql(tmp_path):
    """promtool parses every panel expression, as a recording rule (Grafana's interval variables filled in)."""
    rules = []
    for number, expr in enumerate(panel_exprs().values()):
        for variable, duration in GRAFANA_INTERVALS.items():
            expr = expr.replace(variable, duration)
        rules.append({"record": f"dashboard:panel_{number}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_takes_its_datasource_as_an_input():
    model = dashboard()
    assert [entry["name"] for entry in model["__inputs"]] == ["DS_PROMETHEUS"]
    for panel in dashboard_panels():
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"], panel["title"]


def test_alerts_and_panels_name_only_metrics_the_code_exports(exported):
    assert {"gift_deliveries_total", "gift_delivery_duration_seconds_bucket", "gifts", "sqs_up"} <= exported
    exprs = {**alert_exprs(), **panel_exprs()}
    assert unknown_metric_names(exprs, exported) == {}
    used = set().union(*(promql_metric_names(expr) for expr in exprs.values()))
    assert {"gift_deliveries_total", "sqs_queue_messages", "gift_oldest_queued_age_seconds", "sqs_up"} <= used


def test_the_cross_check_catches_a_panel_naming_a_metric_that_does_not_exist(exported):
    exprs = {
        **panel_exprs(),
        "panel 'fake' A": 'sum by (le) (rate(gift_delivery_seconds_bucket{channel="email"}[5m])) / gift_sent_total',
        "panel 'fake' B": "histogram_quantile(0.95, rate(gift_delivery_duration_seconds[5m]))",  # no suffix
    }
    assert unknown_metric_names(exprs, exported) == {
        "panel 'fake' A": ["gift_delivery_seconds_bucket", "gift_sent_total"],
        "panel 'fake' B": ["gift_delivery_duration_seconds"],
    }


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, channel) (rate(x_bucket{le="1", queue=~"a|b"}[5m]))', {"x_bucket"}),
        ("sqs_up == 0", {"sqs_up"}),
        ("sum(gifts{status='queued'}) > 0 and on () absent_over_time(y_count[15m])", {"gifts", "y_count"}),
        ("(sum(rate(a_total[$__rate_interval])) - 1e-9) * 60 unless ignoring (state) b", {"a_total", "b"}),
        ("max(gift_oldest_queued_age_seconds)", {"gift_oldest_queued_age_seconds"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expr, names):
    assert promql_metric_names(expr) == names
