"""The dashboard in deploy/ queries only metrics a running engine exports."""

from __future__ import annotations

import json
import re
import tomllib

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from engine.config import OPTIONS
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


# -- the container files (no Docker engine here to build them: checked for drift) --


def dockerfile_lines() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_image_is_multi_stage_non_root_and_runs_the_packaged_entry_point() -> None:
    lines = dockerfile_lines()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    final = lines[lines.index(stages[1]) :]
    assert any(line.startswith("COPY --from=build") and ".whl" in line for line in final)
    user = next(line.split()[1] for line in final if line.startswith("USER "))
    assert user not in ("root", "0")
    entry = json.loads(next(line[len("ENTRYPOINT ") :] for line in final if line.startswith("ENTRYPOINT ")))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry[0] in scripts
    # Every PTG_ variable it sets is an option the engine reads.
    known = {option.env for option in OPTIONS}
    variables = set(re.findall(r"\b(PTG_[A-Z_]+)=", " ".join(final)))
    assert variables and variables <= known, variables - known
    port = re.search(r"PTG_PORT=(\d+)", " ".join(final))
    assert port and f"EXPOSE {port.group(1)}" in final


def test_the_compose_file_wires_engine_redis_prometheus_and_grafana() -> None:
    deploy = ROOT / "deploy"
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"engine", "redis", "prometheus", "grafana"}
    assert (deploy / services["engine"]["build"] / "Dockerfile").is_file()
    known = {option.env for option in OPTIONS} | {"REDIS_URL"}
    assert set(services["engine"]["environment"]) <= known
    assert services["engine"]["environment"]["PTG_REDIS_URL"] == "redis://redis:6379"
    mounts = {}
    for service in services.values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (deploy / source).exists(), source
                mounts[target] = deploy / source
    # Prometheus scrapes the engine service on the port it listens on.
    scrape = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["engine:7890"]
    # Grafana is given the data source and loads the dashboard from where it is mounted.
    provisioning = mounts["/etc/grafana/provisioning"]
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "ptg-engine.yaml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert mounts[f"{folder}/ptg-engine.json"] == deploy / "grafana" / "ptg-engine.json"
