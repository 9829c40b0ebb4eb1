"""compose/docker-compose.scale.yml, the scale-out variant, on top of the base file: both the
override alone and the merged result validate against the Compose Specification; the merged
stack has PostgreSQL, RabbitMQ, three workers and two image_svc replicas, every service on
the scale-out settings, and nothing that points nowhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema

from internal import config
from tests.deploy import files
from tests.deploy.test_compose import compose_schema, documented_settings

SCALE_FILE = files.COMPOSE_DIR / "docker-compose.scale.yml"
OURS = ("client_svc", "user_svc", "job_svc", "email_svc", "image_svc", "image_svc_2", "worker")


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of an override file for what these files use: mappings merge key by
    key (environment, depends_on, deploy), anything else is replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def scale_stack() -> dict[str, Any]:
    override = files.interpolate(files.read_yaml(SCALE_FILE), {})
    assert isinstance(override, dict)
    return merged(files.compose(), override)


def errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_the_override_and_the_merged_stack_validate() -> None:
    override = files.interpolate(files.read_yaml(SCALE_FILE), {})
    assert errors(override) == []
    assert errors(scale_stack()) == []


def test_postgres_rabbitmq_three_workers_and_two_image_replicas() -> None:
    services = scale_stack()["services"]
    assert {"postgres", "rabbitmq", "minio", "image_svc", "image_svc_2"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] == "3"
    for name in OURS:
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql://"), name
        assert environment["BROKER_URL"].startswith("amqp://"), name
        assert environment["STORAGE_URL"].startswith("s3://"), name
        replicas = environment["IMAGE_SVC_URL"].split(",")
        assert [r.split("//")[1].split(":")[0] for r in replicas] == ["image_svc", "image_svc_2"]


def test_settings_are_ones_the_services_read_and_every_dependency_exists(tmp_path: Path) -> None:
    services = scale_stack()["services"]
    documented = documented_settings()
    for name in OURS:
        unknown = {
            key for key in services[name]["environment"]
            if key not in documented and not key.startswith("OTEL_")
        }  # fmt: skip
        assert not unknown, (name, unknown)
        assert set(services[name].get("depends_on", {})) <= set(services), name
    # The settings load: several replicas for image_svc, each process binding 0.0.0.0.
    settings = config.load(
        {k: str(v) for k, v in services["image_svc_2"]["environment"].items()}
        | {"MCSV_DATA_DIR": str(tmp_path)}
    )
    assert len(settings.urls("image_svc")) == 2
    assert settings.bind("image_svc") == ("0.0.0.0", 8084)


def test_prometheus_scrapes_the_second_image_replica() -> None:
    stack = scale_stack()["services"]
    mounts = stack["prometheus"]["volumes"]
    extra = next(m for m in mounts if m.endswith("/etc/prometheus/targets-extra:ro"))
    directory = files.COMPOSE_DIR / extra.split(":")[0]
    groups = [g for f in directory.glob("*.json") for g in files.read_json(f)]
    assert ["image_svc_2:8084"] in [g["targets"] for g in groups]
    assert "image_svc_2" in stack
