"""deploy/compose/compose.yaml as Docker Compose itself reads it (`docker compose config`, no engine needed): the
services the issue asks for, each with a health check, settings that the product really has, the search attributes
the workflows set, data in volumes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from alliance.settings import Settings
from tests.deploy.tools import go_tool
from workflows import visibility

pytestmark = pytest.mark.timeout(1500)  # the first run builds Compose from source
ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose" / "compose.yaml"
EXAMPLE_ENV = ROOT / "deploy" / "compose" / "example.env"
PRODUCT = {"worker": "worker", "streams": "streams", "api": "api"}


@pytest.fixture(scope="module")
def compose() -> str:
    return go_tool("compose")


def config(compose: str, *env_file: Path) -> subprocess.CompletedProcess[str]:
    args = [compose, "-f", str(COMPOSE_FILE)]
    for path in env_file:
        args += ["--env-file", str(path)]
    return subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def stack(compose: str) -> dict[str, Any]:
    read = config(compose, EXAMPLE_ENV)
    assert read.returncode == 0, read.stderr
    parsed: dict[str, Any] = json.loads(read.stdout)
    return parsed


def test_the_stack_has_every_service_with_a_health_check(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(services) == {
        "postgresql",
        "temporal",
        "temporal-setup",
        "temporal-ui",
        "kafka",
        "worker",
        "streams",
        "api",
    }
    for name, service in services.items():
        if name != "temporal-setup":  # a one-shot job: its exit status is its health
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics from settings
    volumes = {v["source"] for s in services.values() for v in s.get("volumes", []) if v["type"] == "volume"}
    assert volumes == {"postgresql-data", "kafka-data", "streams-data"}


def test_the_product_services_run_the_cli_with_settings_it_has(stack: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for name, command in PRODUCT.items():
        service = stack["services"][name]
        assert service["command"] == [command]
        assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert {"temporal-setup", "kafka"} <= set(service["depends_on"])
        settings = {k for k in service["environment"] if k.startswith("ALLIANCE_")}
        unknown = {k for k in settings if k.removeprefix("ALLIANCE_").lower() not in fields}
        assert not unknown, f"{name} sets what the product does not read: {unknown}"
        # The configuration parses as the product's settings would.
        Settings.model_validate(
            {k.removeprefix("ALLIANCE_").lower(): v for k, v in service["environment"].items() if k in settings}
        )
    worker = stack["services"]["worker"]
    assert f"127.0.0.1:{worker['environment']['ALLIANCE_METRICS_PORT']}/metrics" in " ".join(
        worker["healthcheck"]["test"]
    )
    assert "/health" in " ".join(stack["services"]["api"]["healthcheck"]["test"])


def test_the_search_attributes_registered_are_the_ones_the_workflows_set(stack: dict[str, Any]) -> None:
    script = " ".join(stack["services"]["temporal-setup"]["command"])
    registered = dict(re.findall(r"(\w+):(\w+)", script.split(" in ", 1)[1].split(";", 1)[0]))
    kinds = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList", "DOUBLE": "Double", "TEXT": "Text", "INT": "Int"}
    wanted = {key.name: kinds[key.indexed_value_type.name] for key in visibility.ALL_KEYS}
    assert registered == wanted


def test_compose_refuses_the_stack_without_a_database_password(compose: str, tmp_path: Path) -> None:
    env = tmp_path / "no-password.env"
    env.write_text("\n".join(line for line in EXAMPLE_ENV.read_text().splitlines() if "DB_PASSWORD" not in line))
    read = config(compose, env)
    assert read.returncode != 0
    assert "set TEMPORAL_DB_PASSWORD" in read.stderr


def test_the_image_copies_what_exists() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    sources = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    for paths in sources:
        for path in paths:
            assert (ROOT / path).exists(), path
