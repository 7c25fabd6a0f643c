"""deploy/observability: the alert rules and the Grafana dashboard only use metrics the product and the Temporal SDK
really serve, and each alert tells the operator what it means."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import activities.publishing
import alliance.api
import streams.app
from tests.deploy.tools import go_tool

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
# Served by sdk-core (temporalio 1.35) in a worker's scrape, durations in seconds: seen in
# tests/alliance/test_metrics.py's live scrape (a calm run) or, for failure counters, once something fails.
SDK_METRICS = {
    "temporal_workflow_task_execution_failed",
    "temporal_workflow_task_schedule_to_start_latency",
    "temporal_activity_schedule_to_start_latency",
    "temporal_num_pollers",
    "temporal_sticky_cache_size",
    "temporal_workflow_completed",
}
NAMES = re.compile(r"\b((?:alliance|temporal)_[a-z_]+)\b")


def served_by_the_product() -> set[str]:
    """The exposition names of the product's own metrics (counters with `_total`, histograms by their series)."""
    assert activities.publishing and alliance.api and streams.app  # imported so that their metrics are registered
    series = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("alliance_")
        for suffix in series[family.type]
    }


def used_in(text: str) -> set[str]:
    return set(NAMES.findall(text))


def known(name: str, product: set[str]) -> bool:
    if name.startswith("alliance_"):
        return name in product
    return re.sub(r"_(bucket|sum|count)$", "", name) in SDK_METRICS


def test_every_alert_uses_served_metrics_and_explains_itself() -> None:
    rules = yaml.safe_load((OBSERVABILITY / "alert-rules.yaml").read_text())
    product = served_by_the_product()
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {r["alert"] for r in alerts} >= {
        "AllianceWorkflowTasksFailing",
        "AllianceNoWorkerPolling",
        "AlliancePublishingRetrying",
        "AllianceReviewsOverdue",
        "AllianceApiServerErrors",
    }
    for rule in alerts:
        metrics = used_in(rule["expr"])
        assert metrics, rule["alert"]
        unknown = {m for m in metrics if not known(m, product)}
        assert not unknown, f"{rule['alert']} uses metrics nobody serves: {unknown}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"].strip()
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_the_dashboard_charts_served_metrics_only() -> None:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    product = served_by_the_product()
    assert dashboard["uid"] == "alliance-workflows"
    charted: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            charted |= used_in(target["expr"])
    unknown = {m for m in charted if not known(m, product)}
    assert not unknown, f"the dashboard charts metrics nobody serves: {unknown}"
    # Every product metric is on the dashboard.
    families = {re.sub(r"_(bucket|sum|count|total|created)$", "", n) for n in product}
    shown = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in charted}
    assert families <= shown, families - shown


@pytest.fixture(scope="module")
def promtool() -> str:
    return go_tool("promtool")


def fires(alert: str, labels: dict[str, str], rules: dict[str, Any]) -> dict[str, Any]:
    """An expected alert for promtool: its labels, and its annotations rendered for those labels."""
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == alert]
    annotations = {
        key: re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], value)
        for key, value in rule["annotations"].items()
    }
    return {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}


@pytest.mark.timeout(1500)  # the first run builds promtool
def test_promtool_accepts_the_rules_and_each_alert_fires_when_it_should_and_not_before(
    promtool: str, tmp_path: Path
) -> None:
    rules_file = OBSERVABILITY / "alert-rules.yaml"
    checked = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = yaml.safe_load(rules_file.read_text())
    cases = [
        {  # overdue for 40 min, then for over an hour: the alert waits its `for: 1h`
            "interval": "1m",
            "input_series": [
                {"series": 'alliance_reviews_overdue{institution="cdb"}', "values": "0x30 1x90"},
                {"series": 'alliance_reviews_overdue{institution="exim"}', "values": "0x120"},
            ],
            "alert_rule_test": [
                {"eval_time": "70m", "alertname": "AllianceReviewsOverdue", "exp_alerts": []},
                {
                    "eval_time": "100m",
                    "alertname": "AllianceReviewsOverdue",
                    "exp_alerts": [fires("AllianceReviewsOverdue", {"institution": "cdb"}, rules)],
                },
            ],
        },
        {  # workflow tasks failing for 10 minutes
            "interval": "1m",
            "input_series": [
                {
                    "series": 'temporal_workflow_task_execution_failed{namespace="default"}',
                    "values": "0x10 1+1x30",
                }
            ],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": "AllianceWorkflowTasksFailing", "exp_alerts": []},
                {
                    "eval_time": "30m",
                    "alertname": "AllianceWorkflowTasksFailing",
                    "exp_alerts": [fires("AllianceWorkflowTasksFailing", {}, rules)],
                },
            ],
        },
        {  # pollers gone for more than 5 minutes
            "interval": "1m",
            "input_series": [
                {"series": 'temporal_num_pollers{poller_type="workflow_task"}', "values": "2x10 0x20"},
                {"series": 'temporal_num_pollers{poller_type="activity_task"}', "values": "2x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": "AllianceNoWorkerPolling", "exp_alerts": []},
                {
                    "eval_time": "20m",
                    "alertname": "AllianceNoWorkerPolling",
                    "exp_alerts": [fires("AllianceNoWorkerPolling", {}, rules)],
                },
            ],
        },
        {  # 9% of API requests fail on the server: alert; 1%: none
            "interval": "1m",
            "input_series": [
                {
                    "series": 'alliance_api_requests_total{method="POST",status="201"}',
                    "values": "0+100x40",
                },
                {
                    "series": 'alliance_api_requests_total{method="POST",status="503"}',
                    "values": "0+10x40",
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": "30m",
                    "alertname": "AllianceApiServerErrors",
                    "exp_alerts": [fires("AllianceApiServerErrors", {}, rules)],
                }
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {
                    "series": 'alliance_api_requests_total{method="GET",status="200"}',
                    "values": "0+100x40",
                },
                {
                    "series": 'alliance_api_requests_total{method="GET",status="503"}',
                    "values": "0+1x40",
                },
            ],
            "alert_rule_test": [{"eval_time": "30m", "alertname": "AllianceApiServerErrors", "exp_alerts": []}],
        },
    ]
    unit = tmp_path / "alert-rules.test.yaml"
    unit.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": cases}))
    tested = subprocess.run([promtool, "test", "rules", str(unit)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
