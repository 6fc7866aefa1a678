"""The Kubernetes objects of one service, and the overlays, as plain dicts (rendered to YAML elsewhere).

Choices that hold for every service, and why:
- Every pod listens on PORT 8000: DNS discovery (DISCOVERY=dns) reaches a service at
  ``DNS_TEMPLATE`` = ``http://{service}:8000``, one port for all. /metrics and /info go to
  INTERNAL_PORT 9090 (the gateway never serves them on its public port).
- Services that others call are headless: DNS then answers one address per ready pod, and the
  callers' balancer spreads the calls (flotilla_discovery.dns_resolver). The gateway, called by no
  service, gets a plain ClusterIP Service for an Ingress or load balancer in front.
- The consumer name is the pod name (INSTANCE_ID from the downward API): unique among replicas, and
  a consumer that left pending entries behind is found by that name by XAUTOCLAIM's idle rule.
- Callers resolve by DNS, yet every pod registers in the Redis registry too (DISCOVERY_REGISTER),
  at its pod IP (ADVERTISE_HOST from the downward API: a pod's name resolves nowhere), so the
  console and operators see every instance, and the console's hand-over refuses a live consumer.
- Probes: startup and readiness on /readyz (database, Redis, consumers), liveness on /healthz only,
  which never touches a dependency: a Redis outage must make pods unready, not restart them all.
- Shutdown: a ``preStop`` pause first (the pod leaves the Service's endpoints and the callers' DNS
  caches while it still serves), then SIGTERM and up to SHUTDOWN_TIMEOUT_SECONDS of draining; the
  grace period covers both with a margin, or the kubelet kills a pod mid-drain.
"""

from __future__ import annotations

import math
from typing import Any

from deploy.services import ServiceFacts

PORT = 8000
INTERNAL_PORT = 9090
DNS_TEMPLATE = "http://{service}:%d" % PORT
# How long the pod keeps serving after it is marked terminating: the endpoint removal has to reach
# the callers, whose DNS answers are cached (the resolver's TTL of 5 s, plus the cluster DNS's).
PRE_STOP_PAUSE_SECONDS = 10
GRACE_MARGIN_SECONDS = 5
IMAGE_PREFIX = "flotilla/"
PART_OF = "flotilla"
# Services no other service calls: a plain Service in front of them, not a headless one.
ENTRY_POINTS = {"gateway"}
# Services whose state lives in the pod, so replicas would split it: one replica, no autoscaler.
POD_LOCAL_STATE = {"console": "/data"}
# Where the gateway and the console find the token verification key (the Secret gateway-jwt, mounted
# as files): the console's operators log in with the gateway's tokens.
JWT_KEY_DIRECTORY = "/etc/flotilla/jwt"
TOKEN_VERIFIERS = {"gateway", "console"}
# Read by KEDA's redis-streams scaler from the container's environment, not by the service.
KEDA_ENV = ("REDIS_ADDRESS", "REDIS_PASSWORD")
# Scale one more consumer replica per this many entries of lag (per stream of the group).
LAG_PER_REPLICA = 100
CPU_TARGET_PERCENT = 70


def grace_period_seconds(service: ServiceFacts) -> int:
    return PRE_STOP_PAUSE_SECONDS + math.ceil(service.shutdown_timeout_seconds) + GRACE_MARGIN_SECONDS


def labels(service: ServiceFacts) -> dict[str, str]:
    return {"app.kubernetes.io/name": service.name, "app.kubernetes.io/part-of": PART_OF}


def selector(service: ServiceFacts) -> dict[str, str]:
    return {"app.kubernetes.io/name": service.name}


def credentials_secret(service: ServiceFacts) -> str:
    """The Secret (created by the operator, never rendered) holding the service's credentials."""
    return f"{service.name}-credentials"


def _metadata(service: ServiceFacts, name: str | None = None) -> dict[str, Any]:
    return {"name": name or service.name, "labels": labels(service)}


def settings_values(service: ServiceFacts) -> dict[str, str]:
    """The ConfigMap: settings that are no secret."""
    values = {
        "HOST": "0.0.0.0",
        "PORT": str(PORT),
        "INTERNAL_PORT": str(INTERNAL_PORT),
        "DISCOVERY": "dns",
        "DNS_TEMPLATE": DNS_TEMPLATE,
        "DISCOVERY_REGISTER": "true",
        "LOG_JSON": "true",
        "LOG_LEVEL": "INFO",
        "SHUTDOWN_TIMEOUT_SECONDS": f"{service.shutdown_timeout_seconds:g}",
    }
    if service.name != "console":  # the console ingests the traces (and does not trace itself)
        values["OTEL_EXPORTER_OTLP_ENDPOINT"] = DNS_TEMPLATE.format(service="console")
    if service.name in POD_LOCAL_STATE:
        values["DATABASE_URL"] = f"sqlite+aiosqlite:///{POD_LOCAL_STATE[service.name]}/{service.name}.db"
    if service.name in TOKEN_VERIFIERS:
        values["JWT_PUBLIC_KEY_FILE"] = f"{JWT_KEY_DIRECTORY}/public.pem"
    return values


def secret_keys(service: ServiceFacts) -> list[str]:
    """Settings (and KEDA's variables) taken from the credentials Secret."""
    keys = ["REDIS_URL"]
    if service.has_database and service.name not in POD_LOCAL_STATE:
        keys.append("DATABASE_URL")
    if service.consumes:
        keys.extend(KEDA_ENV)
    if service.name == "console":  # signs its login links and sessions: the same in every replica and restart
        keys.append("CONSOLE_SECRET")
    return sorted(keys)


def config_map(service: ServiceFacts) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(service, f"{service.name}-settings"),
        "data": settings_values(service),
    }


def deployment(service: ServiceFacts) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "ADVERTISE_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": credentials_secret(service), "key": key}}}
            for key in secret_keys(service)
        ),
    ]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if service.name in POD_LOCAL_STATE:
        volumes.append({"name": "data", "emptyDir": {}})
        mounts.append({"name": "data", "mountPath": POD_LOCAL_STATE[service.name]})
    if service.name in TOKEN_VERIFIERS:
        volumes.append({"name": "jwt", "secret": {"secretName": "gateway-jwt"}})
        mounts.append({"name": "jwt", "mountPath": JWT_KEY_DIRECTORY, "readOnly": True})

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "failureThreshold": failures,
            "timeoutSeconds": 3,
        }

    container = {
        "name": service.name,
        "image": f"{IMAGE_PREFIX}{service.name}",
        "args": ["serve"],
        "ports": [
            {"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": INTERNAL_PORT, "protocol": "TCP"},
        ],
        "envFrom": [{"configMapRef": {"name": f"{service.name}-settings"}}],
        "env": env,
        # Migrations (start-up) may take a while: a minute before liveness applies.
        "startupProbe": probe("/readyz", 2, 30),
        "readinessProbe": probe("/readyz", 5, 2),
        "livenessProbe": probe("/healthz", 10, 3),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_PAUSE_SECONDS}}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(service)},
        "template": {
            "metadata": {"labels": labels(service)},
            "spec": {
                "terminationGracePeriodSeconds": grace_period_seconds(service),
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "runAsGroup": 10001,
                    "fsGroup": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if service.name in POD_LOCAL_STATE:
        spec["replicas"] = 1  # no autoscaler owns the count
        spec["strategy"] = {"type": "Recreate"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(service), "spec": spec}


def service_object(service: ServiceFacts) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": selector(service),
        "ports": [
            {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": INTERNAL_PORT, "targetPort": "metrics", "protocol": "TCP"},
        ],
    }
    if service.name not in ENTRY_POINTS:
        spec["clusterIP"] = "None"  # headless: one DNS address per ready pod
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(service), "spec": spec}


def disruption_budget(service: ServiceFacts) -> dict[str, Any]:
    # maxUnavailable, not minAvailable: it lets a node drain go on at one replica (or zero).
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(service),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(service)}},
    }


def cpu_autoscaler(service: ServiceFacts) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(service),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service.name},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": CPU_TARGET_PERCENT},
                    },
                }
            ],
        },
    }


def scaled_object(service: ServiceFacts) -> dict[str, Any]:
    """KEDA: replicas from the groups' lag (to zero when there is none), and CPU for the HTTP side."""
    triggers: list[dict[str, Any]] = [
        {
            "type": "redis-streams",
            "metadata": {
                "addressFromEnv": "REDIS_ADDRESS",
                "passwordFromEnv": "REDIS_PASSWORD",
                "stream": stream,
                "consumerGroup": group.group,
                "lagCount": str(LAG_PER_REPLICA),
                "activationLagCount": "0",
            },
        }
        for group in service.consumer_groups
        for stream in group.streams
    ]
    triggers.append({"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(CPU_TARGET_PERCENT)}})
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(service),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service.name},
            "minReplicaCount": 0,
            "maxReplicaCount": 4,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": triggers,
        },
    }


def base_objects(service: ServiceFacts) -> dict[str, dict[str, Any]]:
    """File name -> object, for the service's kustomize base."""
    objects = {
        "configmap.yaml": config_map(service),
        "deployment.yaml": deployment(service),
        "service.yaml": service_object(service),
        "pdb.yaml": disruption_budget(service),
    }
    if service.consumes:
        objects["scaledobject.yaml"] = scaled_object(service)
    elif service.name not in POD_LOCAL_STATE:
        objects["hpa.yaml"] = cpu_autoscaler(service)
    return objects


def base_kustomization(files: list[str]) -> dict[str, Any]:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": sorted(files)}


# Per overlay: the containers' resources, the autoscalers' bounds. In prod consumers keep two
# replicas: they serve HTTP (through the gateway) too, which scaled to zero would answer nothing.
OVERLAYS: dict[str, dict[str, Any]] = {
    "dev": {
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "hpa": (1, 2),
        "keda": (0, 2),
    },
    "prod": {
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "hpa": (2, 10),
        "keda": (2, 10),
    },
}


def overlay_kustomization(name: str, services: list[ServiceFacts]) -> dict[str, Any]:
    settings = OVERLAYS[name]

    def patch(kind: str, operations: list[dict[str, Any]], group: str | None = None) -> dict[str, Any]:
        target = {"kind": kind, **({"group": group} if group else {})}
        return {"target": target, "patch": _json_patch(operations)}

    patches = [
        patch(
            "Deployment",
            [{"op": "replace", "path": "/spec/template/spec/containers/0/resources", "value": settings["resources"]}],
        )
    ]
    if any(not s.consumes and s.name not in POD_LOCAL_STATE for s in services):
        low, high = settings["hpa"]
        patches.append(
            patch(
                "HorizontalPodAutoscaler",
                [
                    {"op": "replace", "path": "/spec/minReplicas", "value": low},
                    {"op": "replace", "path": "/spec/maxReplicas", "value": high},
                ],
            )
        )
    if any(s.consumes for s in services):
        low, high = settings["keda"]
        patches.append(
            patch(
                "ScaledObject",
                [
                    {"op": "replace", "path": "/spec/minReplicaCount", "value": low},
                    {"op": "replace", "path": "/spec/maxReplicaCount", "value": high},
                ],
                group="keda.sh",
            )
        )
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": f"{PART_OF}-{name}",
        "resources": [f"../../base/{s.name}" for s in services],
        "patches": patches,
    }


def _json_patch(operations: list[dict[str, Any]]) -> str:
    import json

    return json.dumps(operations, sort_keys=True)
