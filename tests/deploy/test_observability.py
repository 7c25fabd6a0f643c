"""deploy/observability: the alert rules and the Grafana dashboard only use metrics the product and the Temporal SDK
really serve, and each alert tells the operator what it means."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import activities.publishing
import alliance.api
import streams.app

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
