"""The dashboard in deploy/ queries only metrics a running engine exports."""

from __future__ import annotations

import json
import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, EngineProcess

METRIC = re.compile(r"\b((?:ptg|process)_[a-z_]+)\b")


def dashboard_metrics() -> set[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "ptg-engine.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for expr in expressions for name in METRIC.findall(expr)}


def test_every_metric_the_dashboard_queries_is_exported(engine: EngineProcess) -> None:
    text = httpx.get(f"{engine.base_url}/metrics").text
    exported = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    wanted = dashboard_metrics()
    assert len(wanted) >= 10
    assert wanted <= exported, sorted(wanted - exported)
