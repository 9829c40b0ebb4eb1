"""The services' layout keeps its promises: every service of the registry can be built and
started and has typed peers; the cmd/ scripts do nothing when imported; and the layers hold
(a service reaches another only through contracts and shared layers, config stays low,
observability builds no clients)."""

from __future__ import annotations

import ast
import runpy
from pathlib import Path

import pytest
from mcsv.twirp import AsyncClient, SyncClient

from internal import registry
from internal.peers import SERVICE_OF_CLIENT
from internal.services import runner
from tests.support.servers import ROOT

INTERNAL = ROOT / "internal"


def imported_modules(path: Path) -> set[str]:
    """The modules a source file imports (absolute names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_every_service_has_an_app_factory_a_script_and_peers() -> None:
    """Every service an app and a script; those with a contract (all but the console) a
    sync and an async generated client among the peers."""
    assert set(runner.APP_MODULES) == set(registry.NAMES)
    for name in registry.NAMES:
        assert callable(runner.app_factory(name))
        assert (ROOT / "cmd" / f"{name}.py").is_file()
    for name in registry.CONTRACT_NAMES:
        clients = [client for client, service in SERVICE_OF_CLIENT.items() if service == name]
        assert sorted(issubclass(c, AsyncClient) for c in clients) == [False, True], name
        assert all(issubclass(c, SyncClient | AsyncClient) for c in clients)
    assert set(SERVICE_OF_CLIENT.values()) == set(registry.CONTRACT_NAMES)


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "cmd").glob("*.py")))
def test_a_script_imported_runs_nothing(script: str) -> None:
    namespace = runpy.run_path(str(ROOT / "cmd" / script), run_name="imported")
    assert namespace["__name__"] == "imported"


@pytest.mark.parametrize("service", registry.NAMES)
def test_a_service_imports_no_other_service(service: str) -> None:
    others = {f"internal.services.{name}" for name in registry.NAMES if name != service}
    for path in sorted((INTERNAL / "services" / service).glob("*.py")):
        reached = {m for m in imported_modules(path) if m.startswith(tuple(others))}
        assert not reached, f"{path.relative_to(ROOT)} imports {sorted(reached)}"


def test_config_and_the_registry_stay_the_lowest_layer() -> None:
    assert {
        m for m in imported_modules(INTERNAL / "registry.py") if m.startswith("internal")
    } == set()
    from_config = {m for m in imported_modules(INTERNAL / "config.py") if m.startswith("internal")}
    assert from_config <= {"internal", "internal.registry"}


def test_observability_provides_transports_and_hooks_but_builds_no_clients() -> None:
    for path in sorted((INTERNAL / "observability").glob("*.py")):
        reached = {
            m for m in imported_modules(path) if m.startswith(("internal.rpc", "internal.peers"))
        }
        assert not reached, f"{path.relative_to(ROOT)} imports {sorted(reached)}"
