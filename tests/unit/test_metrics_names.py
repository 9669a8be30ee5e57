"""The metric names are one vocabulary: what a node exports (``openssm.ops.metrics``, with the gateway's
figures) is what the README documents and what the Grafana dashboard queries."""

from __future__ import annotations

import asyncio
import json
import re

from tests.conftest import REPO_ROOT

from openssm.gateway.metrics import GatewayMetrics
from openssm.ops.metrics import Metrics

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "openssm.json"


def exported() -> dict[str, set[str]]:
    """Each exported sample name and the label names it carries."""
    metrics = Metrics()
    metrics.add_gateway(GatewayMetrics(metrics))
    metrics.api_requests.labels("ssm:StartSession", "200").inc()
    metrics.api_request_duration.labels("ssm:StartSession").observe(0.01)
    metrics.authorization_denied.labels("ssm:StartSession").inc()
    text = asyncio.run(metrics.render()).decode()
    names: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = re.match(r"(openssm_\w+)(?:\{(.*)\})? ", line)
        if match:
            labels = set(re.findall(r'(\w+)="', match.group(2) or "")) - {"le"}
            names.setdefault(match.group(1), set()).update(labels)
    return names


def test_the_dashboard_queries_only_exported_metrics_and_labels() -> None:
    names = exported()
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"openssm_\w+", expr)}
    assert used <= set(names), used - set(names)
    documented = {"openssm_agents_connected", "openssm_sessions_active", "openssm_relayed_bytes_total"}
    assert documented <= used  # the gateway's figures are on the dashboard
    for expr in expressions:
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            for label in (part.strip() for part in grouping.split(",")):
                assert label in {"le", "instance"} or any(label in labels for labels in names.values()), label


def test_the_readme_documents_every_metric_with_its_labels() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for sample, labels in exported().items():
        if sample.endswith("_created"):  # prometheus-client's creation time of each counter and histogram
            continue
        name = re.sub(r"_(bucket|count|sum)$", "", sample)  # a histogram's parts
        assert f"`{name}" in readme, name
        for label in labels:
            assert re.search(rf"`{name}\{{[^`]*{label}", readme), (name, label)
