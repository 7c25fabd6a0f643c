"""deploy/kubernetes: every overlay renders with kustomize and validates against the Kubernetes schemas (strict);
the product's Deployments have probes on endpoints the product serves and resource requests; the worker scales
with an HPA; the ConfigMap holds settings the product reads; the Strimzi topics are the ones the product creates
and checks; the Helm values register the search attributes the workflows set."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from alliance.connections import topic_configs, topic_plan
from alliance.settings import Settings
from tests.deploy.tools import go_tool
from workflows import visibility

pytestmark = pytest.mark.timeout(900)  # the first run builds kustomize
ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["staging", "production"]
KUBERNETES_VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]


@pytest.fixture(scope="module")
def kustomize() -> str:
    return go_tool("kustomize")


def render(kustomize: str, overlay: str) -> list[dict[str, Any]]:
    built = subprocess.run(
        [kustomize, "build", str(KUBERNETES / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def settings_of(manifests: list[dict[str, Any]]) -> Settings:
    (config,) = [m for m in manifests if m["kind"] == "ConfigMap"]
    fields = set(Settings.model_fields)
    unknown = {k for k in config["data"] if k.removeprefix("ALLIANCE_").lower() not in fields}
    assert not unknown, f"the ConfigMap sets what the product does not read: {unknown}"
    return Settings.model_validate({k.removeprefix("ALLIANCE_").lower(): v for k, v in config["data"].items()})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_validates_against_the_kubernetes_schemas(kustomize: str, overlay: str) -> None:
    manifests = render(kustomize, overlay)
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "Deployment", "HorizontalPodAutoscaler"] + ["Service"] * 3
    for manifest in manifests:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)
        assert manifest["metadata"]["namespace"] == f"alliance{'-staging' if overlay == 'staging' else ''}"
        assert manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] == "alliance-workflows"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_deployments_are_probed_sized_configured_and_the_worker_scales(kustomize: str, overlay: str) -> None:
    manifests = render(kustomize, overlay)
    settings = settings_of(manifests)
    (config,) = [m for m in manifests if m["kind"] == "ConfigMap"]
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    assert set(deployments) == {"alliance-worker", "alliance-streams", "alliance-api"}
    probed: dict[str, set[tuple[str, int | str]]] = {}
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].startswith("registry.example.org/alliance/alliance-workflows:")
        assert container["args"] == [name.removeprefix("alliance-")]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and container["resources"]["limits"]
        assert container["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]  # the hashed name
        assert container["envFrom"][1]["secretRef"]["name"] == "alliance-secrets"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        probed[name] = set()
        for probe in ("readinessProbe", "livenessProbe"):
            check = container[probe]
            if "httpGet" in check:
                probed[name].add((check["httpGet"]["path"], ports[check["httpGet"]["port"]]))
            else:
                assert ports[check["tcpSocket"]["port"]]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        if name != "alliance-streams":
            assert str(settings.signing_key_file.parent) in mounts
        if settings.kafka_ssl_cafile:
            assert str(settings.kafka_ssl_cafile.parent) in mounts
        if settings.temporal_tls_cert:
            assert str(settings.temporal_tls_cert.parent) in mounts
    # The probes hit what each process serves, on the ports the settings give it.
    assert probed["alliance-worker"] == {("/metrics", settings.metrics_port)}
    assert probed["alliance-api"] == {("/health", settings.api_port)}
    assert probed["alliance-streams"] == {("/portfolio/", settings.streams_web_port), ("/partitions/", 6066)}
    (hpa,) = [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "alliance-worker"}
    assert hpa["spec"]["minReplicas"] >= 2


def test_the_strimzi_topics_are_the_ones_the_product_creates_and_checks(kustomize: str) -> None:
    settings = settings_of(render(kustomize, "production"))
    declared = {
        doc["spec"]["topicName"]: (doc["spec"]["partitions"], doc["spec"]["config"]["cleanup.policy"])
        for doc in yaml.safe_load_all((KUBERNETES / "platform" / "strimzi-kafka.yaml").read_text())
        if doc and doc["kind"] == "KafkaTopic"
    }
    assert declared == topic_plan(settings, streams=True)
    # Retention is a deliberate setting: each topic declared with the retention the product creates it with.
    retention = {
        doc["spec"]["topicName"]: str(doc["spec"]["config"].get("retention.ms"))
        for doc in yaml.safe_load_all((KUBERNETES / "platform" / "strimzi-kafka.yaml").read_text())
        if doc and doc["kind"] == "KafkaTopic"
    }
    assert retention == {t: str(c.get("retention.ms")) for t, c in topic_configs(settings, streams=True).items()}


def test_the_helm_values_register_the_search_attributes_the_workflows_set() -> None:
    values = (KUBERNETES / "platform" / "temporal-values.yaml").read_text()
    registered = dict(re.findall(r"--name (\w+) --type (\w+)", values))
    kinds = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "DOUBLE": "Double", "TEXT": "Text", "INT": "Int"}
    assert registered == {key.name: kinds[key.indexed_value_type.name] for key in visibility.ALL_KEYS}
    yaml.safe_load(values)  # and it is YAML
