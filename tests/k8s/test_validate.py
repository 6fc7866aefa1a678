"""Every overlay renders with kubectl; every object in it is valid for a current Kubernetes
(kubernetes-validate --strict, offline schemas), and KEDA's, which that tool does not know, hold
the fields the scaler reads."""

from __future__ import annotations

from typing import Any

import deploy.manifests as manifests
import kubernetes_validate
import pytest
from deploy.services import ServiceFacts
from k8s.conftest import OVERLAYS, kustomize

KUBERNETES_VERSION = kubernetes_validate.latest_version()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_kubernetes_object_is_valid_for_a_current_kubernetes_in_strict_mode(
    kubectl: str, overlay: str
) -> None:
    objects = [o for o in kustomize(kubectl, overlay) if not o["apiVersion"].startswith("keda.sh/")]
    assert objects
    problems = []
    for document in objects:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{document['kind']}/{document['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_lands_in_the_overlays_namespace(kubectl: str, overlay: str) -> None:
    namespaces = {o["metadata"].get("namespace") for o in kustomize(kubectl, overlay)}
    assert namespaces == {f"flotilla-{overlay}"}


def _scaled_objects(kubectl: str, overlay: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in kustomize(kubectl, overlay) if o["kind"] == "ScaledObject"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_consumer_service_scales_on_its_groups_lag_of_every_stream_it_reads(
    kubectl: str, overlay: str, services: list[ServiceFacts]
) -> None:
    scaled = _scaled_objects(kubectl, overlay)
    assert set(scaled) == {s.name for s in services if s.consumes}
    for service in (s for s in services if s.consumes):
        scaled_object = scaled[service.name]
        assert scaled_object["apiVersion"] == "keda.sh/v1alpha1"
        spec = scaled_object["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service.name}
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        lag_triggers = [t for t in spec["triggers"] if t["type"] == "redis-streams"]
        assert {(t["metadata"]["consumerGroup"], t["metadata"]["stream"]) for t in lag_triggers} == {
            (g.group, stream) for g in service.consumer_groups for stream in g.streams
        }
        for trigger in lag_triggers:
            metadata = trigger["metadata"]
            # KEDA's scaler metadata is a map of strings; a number there is refused by the operator.
            assert all(isinstance(v, str) for v in metadata.values()), metadata
            assert int(metadata["lagCount"]) > 0 or int(metadata["pendingEntriesCount"]) > 0
            assert "address" not in metadata and "host" not in metadata  # no address baked in
            assert metadata["addressFromEnv"] in manifests.KEDA_ENV
            assert metadata["passwordFromEnv"] in manifests.KEDA_ENV


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_variables_a_scaler_reads_are_in_its_target_container(kubectl: str, overlay: str) -> None:
    objects = kustomize(kubectl, overlay)
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    for name, scaled_object in _scaled_objects(kubectl, overlay).items():
        container = deployments[scaled_object["spec"]["scaleTargetRef"]["name"]]["spec"]["template"]["spec"][
            "containers"
        ][0]
        names = {e["name"] for e in container["env"]}
        for trigger in scaled_object["spec"]["triggers"]:
            for key, value in trigger["metadata"].items():
                if key.endswith("FromEnv"):
                    assert value in names, f"{name}: {key}={value} is not in the container's env"


def test_the_base_lets_consumers_scale_to_zero(rendered: dict[str, str]) -> None:
    import yaml

    for path, text in rendered.items():
        if path.startswith("base/") and path.endswith("/scaledobject.yaml"):
            assert yaml.safe_load(text)["spec"]["minReplicaCount"] == 0, path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_http_services_scale_on_cpu_and_the_console_keeps_one_replica(
    kubectl: str, overlay: str, services: list[ServiceFacts]
) -> None:
    objects = kustomize(kubectl, overlay)
    autoscaled = {o["metadata"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    assert autoscaled == {s.name for s in services if not s.consumes and s.name not in manifests.POD_LOCAL_STATE}
    console = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "console")
    assert console["spec"]["replicas"] == 1
