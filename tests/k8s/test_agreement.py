"""The manifests and the services agree: settings, probe paths, ports, consumer names, draining."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import deploy.manifests as manifests
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from deploy.services import ServiceFacts, service_definition

from flotilla_kit.health import healthz
from flotilla_kit.settings import load_settings

# Read by KEDA from the container (not settings of the service); PEX_* by the PEX runtime.
NOT_SETTINGS = set(manifests.KEDA_ENV)


def _base(rendered: dict[str, str], service: str, file: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(rendered[f"base/{service}/{file}"])
    return document


def _container(rendered: dict[str, str], service: str) -> dict[str, Any]:
    container: dict[str, Any] = _base(rendered, service, "deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    return container


def _environment(rendered: dict[str, str], service: str) -> dict[str, Any]:
    """Variable -> value (ConfigMap) or its source (Secret, downward API)."""
    values: dict[str, Any] = dict(_base(rendered, service, "configmap.yaml")["data"])
    container = _container(rendered, service)
    assert container["envFrom"] == [{"configMapRef": {"name": f"{service}-settings"}}]
    for variable in container["env"]:
        assert variable["name"] not in values, f"{service}: {variable['name']} set twice"
        values[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return values


def test_every_variable_set_is_a_setting_of_the_service_and_every_value_parses(
    services: list[ServiceFacts], rendered: dict[str, str]
) -> None:
    for service in services:
        environment = _environment(rendered, service.name)
        unknown = set(environment) - service.setting_names() - NOT_SETTINGS
        assert not unknown, f"{service.name}: not settings of {service.settings_class.__name__}: {sorted(unknown)}"
        # The values must load as the service loads them (secrets and the pod's name stand in).
        settings = load_settings(service.settings_class, _loadable_environment(service, environment))
        assert settings.port == manifests.PORT


def test_every_required_setting_and_every_credential_the_service_needs_is_provided(
    services: list[ServiceFacts], rendered: dict[str, str]
) -> None:
    for service in services:
        environment = _environment(rendered, service.name)
        assert service.required_settings() <= set(environment), service.name
        # Messaging, the gateway's limits and the console's views all need Redis; a database of its
        # own needs its URL, from the credentials Secret unless its state is pod-local by design.
        assert environment["REDIS_URL"] == {"secretKeyRef": {"name": f"{service.name}-credentials", "key": "REDIS_URL"}}
        if service.has_database:
            assert "DATABASE_URL" in environment, service.name
        if service.name in ("gateway", "console"):  # both verify the gateway's tokens
            assert environment["JWT_PUBLIC_KEY_FILE"].startswith(manifests.JWT_KEY_DIRECTORY + "/")
        if service.name == "console":  # the same secret in every replica and restart: sessions survive them
            assert environment["CONSOLE_SECRET"] == {
                "secretKeyRef": {"name": "console-credentials", "key": "CONSOLE_SECRET"}
            }


def test_the_consumer_name_is_the_pod_name_and_discovery_is_by_the_services_dns_names(
    services: list[ServiceFacts], rendered: dict[str, str]
) -> None:
    names = {s.name for s in services}
    for service in services:
        environment = _environment(rendered, service.name)
        assert environment["INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert environment["DISCOVERY"] == "dns"
        template = environment["DNS_TEMPLATE"]
        assert template.format(service="x") == f"http://x:{environment['PORT']}"
        assert _base(rendered, service.name, "service.yaml")["metadata"]["name"] == service.name
    assert names == {n for n in names if f"base/{n}/service.yaml" in rendered}


def test_every_pod_registers_in_the_redis_registry_at_its_pod_ip_for_the_console(
    services: list[ServiceFacts], rendered: dict[str, str]
) -> None:
    # DNS resolves the callers' calls; the registry is what the console lists, so every pod is in it.
    for service in services:
        environment = _environment(rendered, service.name)
        assert environment["ADVERTISE_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}, service.name
        assert environment["DISCOVERY_REGISTER"] == "true"
        # Loaded as the pod loads them, with a pod IP: the registered URLs are the pod's own.
        plain = _loadable_environment(service, environment)
        plain["ADVERTISE_HOST"] = "10.244.1.7"
        settings = load_settings(service.settings_class, plain)
        assert (settings.redis_url, settings.discovery_register, settings.discovery) == (
            "redis://redis:6379/0",
            True,
            "dns",
        )
        assert settings.resolved_public_url() == f"http://10.244.1.7:{manifests.PORT}"
        assert settings.resolved_internal_url() == f"http://10.244.1.7:{manifests.INTERNAL_PORT}"


def test_ports_agree_between_settings_container_and_service(
    services: list[ServiceFacts], rendered: dict[str, str]
) -> None:
    for service in services:
        environment = _environment(rendered, service.name)
        ports = {p["name"]: p["containerPort"] for p in _container(rendered, service.name)["ports"]}
        assert ports == {"http": int(environment["PORT"]), "metrics": int(environment["INTERNAL_PORT"])}
        service_ports = _base(rendered, service.name, "service.yaml")["spec"]["ports"]
        assert {(p["targetPort"], p["port"]) for p in service_ports} == set(ports.items())
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert _container(rendered, service.name)[probe]["httpGet"]["port"] == "http"


def _loadable_environment(service: ServiceFacts, environment: dict[str, Any]) -> dict[str, str]:
    """The pod's settings with stand-ins for what the cluster provides (secrets, the pod's name and IP)."""
    plain = {k: v if isinstance(v, str) else "pod-0" for k, v in environment.items() if k not in NOT_SETTINGS}
    plain["ADVERTISE_HOST"] = "10.244.0.9"
    plain["REDIS_URL"] = "redis://redis:6379/0"
    if not isinstance(environment.get("DATABASE_URL", ""), str):
        plain["DATABASE_URL"] = "postgresql://user:secret@postgres/db"
    if "CONSOLE_SECRET" in environment:
        plain["CONSOLE_SECRET"] = "s" * 32
    return plain


def _public_paths(service: ServiceFacts, rendered: dict[str, str], tmp_path: Path) -> set[str]:
    """The paths the service's own app (its factory, with the pod's settings) routes on its public port.

    Building the app starts nothing (no Redis, no database: that is the lifespan's work).
    """
    environment = _loadable_environment(service, _environment(rendered, service.name))
    if "JWT_PUBLIC_KEY_FILE" in environment:  # mounted from a Secret in the pod: a real key here
        key = tmp_path / f"{service.name}-public.pem"
        key.write_bytes(
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        environment["JWT_PUBLIC_KEY_FILE"] = str(key)
    settings = load_settings(service.settings_class, environment)
    app = service_definition(service.name).create_app(settings)
    return {route.path for route in app.routes}


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
def test_every_probe_path_is_routed_by_the_services_app_on_its_public_port(
    probe: str, services: list[ServiceFacts], rendered: dict[str, str], tmp_path: Path
) -> None:
    for service in services:
        path = _container(rendered, service.name)[probe]["httpGet"]["path"]
        assert path in _public_paths(service, rendered, tmp_path), f"{service.name}: {probe} on {path}"


def test_readiness_is_on_readyz_and_liveness_on_healthz_which_touches_no_dependency(
    services: list[ServiceFacts], rendered: dict[str, str]
) -> None:
    for service in services:
        container = _container(rendered, service.name)
        assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # /healthz takes no dependency (no state, no db, no redis): it answers while Redis is down.
    assert set(healthz.parsed_fn_signature.parameters) == set()


def test_the_grace_period_covers_the_pause_and_the_drain_timeout(
    services: list[ServiceFacts], rendered: dict[str, str]
) -> None:
    for service in services:
        pod = _base(rendered, service.name, "deployment.yaml")["spec"]["template"]["spec"]
        pause = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = float(_environment(rendered, service.name)["SHUTDOWN_TIMEOUT_SECONDS"])
        assert drain == service.shutdown_timeout_seconds
        assert pause > 0
        assert pause + drain < pod["terminationGracePeriodSeconds"], service.name


def test_the_pods_run_as_non_root_on_a_read_only_root_filesystem(
    services: list[ServiceFacts], rendered: dict[str, str]
) -> None:
    for service in services:
        pod = _base(rendered, service.name, "deployment.yaml")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        assert "/tmp" in {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
