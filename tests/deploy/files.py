"""Where the deployment files are, and reading them as compose and Grafana would."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from internal import registry

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "observability"
PROMETHEUS_DIR = OBSERVABILITY / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
COMPOSE_TARGETS = PROMETHEUS_DIR / "targets" / "compose.json"
LOKI_CONFIG = OBSERVABILITY / "loki" / "loki.yml"
PROMTAIL_CONFIG = OBSERVABILITY / "promtail" / "promtail.yml"
GRAFANA = OBSERVABILITY / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"

# The services built from compose/Dockerfile: ours.
APP_SERVICES = (*registry.NAMES, "worker")


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def parse_file(path: Path) -> None:
    """Raises when a YAML or JSON file does not parse (other files are not looked into)."""
    if path.suffix in (".yml", ".yaml"):
        read_yaml(path)
    elif path.suffix == ".json":
        read_json(path)


def tool(name: str, package: str) -> str:
    """Path of a command-line tool, in the virtualenv or on PATH; fails the test, naming the
    package to install, when it is missing."""
    beside_python = Path(sys.executable).with_name(name)
    found = str(beside_python) if beside_python.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: it comes with {package}")
    return found


def promtool() -> str:
    return tool("promtool", "Debian's prometheus package (apt-get install -y prometheus)")


# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $VAR, and $$ for a literal $.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """The compose file's values with variables substituted, as `docker compose` does before
    it validates the file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        if op == ":-" and not current:
            return arg
        if op == "-" and current is None:
            return arg
        if op in (":?", "?") and not current:
            raise ValueError(f"compose variable {name} is required: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


@cache
def compose() -> dict[str, Any]:
    """The compose file, YAML merge keys applied and variables interpolated from an empty
    environment (so every default is used)."""
    loaded = interpolate(read_yaml(COMPOSE_FILE), {})
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def environment(service: str) -> dict[str, str]:
    """A service's `environment`, in map or list form, as a map."""
    raw = services()[service].get("environment", {})
    if isinstance(raw, list):
        return dict(item.partition("=")[::2] for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def bind_mounts(service: str) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of each bind mount of a service (named volumes left out)."""
    mounts = []
    for volume in services()[service].get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") != "bind":
                continue
            source, target = volume["source"], volume["target"]
        else:
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/")):
                continue  # a named volume
        mounts.append((_host_path(source), PurePosixPath(target)))
    return mounts


def _host_path(source: str) -> Path:
    return Path(os.path.normpath(COMPOSE_DIR / source))


def host_path(service: str, container_path: str) -> Path:
    """The file on this machine that a path inside a service's container is mounted from."""
    inside = PurePosixPath(container_path)
    for host, target in bind_mounts(service):
        if inside == target or target in inside.parents:
            return host / inside.relative_to(target)
    raise AssertionError(f"{service}: nothing is mounted at {container_path}")
