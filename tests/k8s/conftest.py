"""Where the committed manifests are, and kubectl (skipped without it locally, a failure in CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.render import rendered_files
from deploy.services import ServiceFacts, all_services

# The build root: the checkout, or Pants's sandbox (which holds deploy/k8s through tests/k8s:manifests).
ROOT = next(p for p in [Path.cwd(), *Path(__file__).resolve().parents] if (p / "deploy" / "k8s").is_dir())
MANIFESTS = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (MANIFESTS / "overlays").iterdir())


@pytest.fixture(scope="session")
def services() -> list[ServiceFacts]:
    return all_services()


@pytest.fixture(scope="session")
def rendered(services: list[ServiceFacts]) -> dict[str, str]:
    return rendered_files(services)


@pytest.fixture(scope="session")
def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        message = "kubectl is not on PATH (the CI image has it; Pants passes PATH via [test] extra_env_vars)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def kustomize(kubectl: str, overlay: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders for ``overlay`` (offline: no cluster involved)."""
    result = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document]
