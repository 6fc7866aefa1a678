"""The libs' wheels, as `pants package` builds them, installed with pip into empty venvs outside the repo.

A lib's wheel must declare what it imports and nothing more: the contracts and the service clients
install and import on their own, and pull in neither the service runtime (flotilla-kit) nor Litestar
or SQLAlchemy. Third-party packages come from the package index, as they would for a user.
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

CLIENTS = ("catalog_client", "inventory_client", "orders_client", "payments_client", "notifications_client")
RUNTIME = {"flotilla-kit", "flotilla-streams", "litestar", "sqlalchemy", "alembic", "granian"}


@pytest.fixture(scope="module")
def wheels() -> Path:
    """The folder of the built wheels (the sandbox's dist outputs, wherever Pants put them)."""
    found = sorted(Path.cwd().rglob("flotilla_*.whl"))
    assert found, f"no built wheels under {Path.cwd()}: run with `pants test` (it builds them)"
    folders = {path.parent for path in found}
    assert len(folders) == 1, folders
    return folders.pop()


def _venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    return path / "bin" / "python"


def _pip_install(python: Path, wheels: Path, *names: str) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--find-links", str(wheels), *names],
        capture_output=True,
        text=True,
        timeout=500,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _installed(python: Path) -> set[str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split("==")[0].lower().replace("_", "-") for line in listing.splitlines() if "==" in line}


def _run(python: Path, code: str) -> str:
    # Run outside the repository and the sandbox's sources: only what pip installed is importable.
    result = subprocess.run(
        [str(python), "-I", "-c", code], capture_output=True, text=True, timeout=60, cwd=python.parent
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_contracts_wheel_installs_alone_and_decodes_an_event(wheels: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _pip_install(python, wheels, "flotilla-contracts")

    out = _run(
        python,
        "import msgspec, flotilla_contracts\n"
        "from flotilla_contracts.catalog import Money\n"
        "from flotilla_contracts.events import OrderConfirmed\n"
        "import uuid\n"
        "event = OrderConfirmed(order_id=uuid.uuid4(), customer_id='c-1', total=Money(amount=450, currency='EUR'))\n"
        "assert msgspec.json.decode(msgspec.json.encode(event), type=OrderConfirmed) == event\n"
        "print(flotilla_contracts.__version__, flotilla_contracts.__file__)",
    )
    version, location = out.split()
    assert version == _wheel_version(wheels, "flotilla_contracts")
    assert str(tmp_path) in location  # the installed copy, not the repo's
    assert _installed(python) - {"pip", "setuptools"} == {"flotilla-contracts", "msgspec"}


def test_every_service_client_installs_without_the_service_runtime(wheels: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _pip_install(python, wheels, *(f"flotilla-{name.replace('_', '-')}" for name in CLIENTS))

    out = _run(python, "".join(f"import {name}; print({name}.__version__)\n" for name in CLIENTS))
    assert out.split() == [_wheel_version(wheels, name) for name in CLIENTS]
    installed = _installed(python)
    assert not installed & RUNTIME, installed & RUNTIME
    assert {"flotilla-http", "flotilla-contracts"} <= installed


def _wheel_version(wheels: Path, lib: str) -> str:
    """The version in the built wheel's file name (from the lib's VERSION file)."""
    distribution = lib if lib.startswith("flotilla_") else f"flotilla_{lib}"
    (wheel,) = wheels.glob(f"{distribution}-*.whl")
    return wheel.name.split("-")[1]
