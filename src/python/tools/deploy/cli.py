"""``deploy render [--check] [--output DIR]``: the Kubernetes manifests of every service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from deploy.render import rendered_files, stale, write
from deploy.services import SERVICES, DeployError, all_services, services_in_checkout

DEFAULT_OUTPUT = Path("deploy/k8s")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deploy", description="Kubernetes manifests of the services.")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write deploy/k8s/ (bases per service, overlays dev and prod)")
    render.add_argument("--check", action="store_true", help="change nothing; exit 1 naming what is stale")
    render.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where the manifests go (default: deploy/k8s, run in the build root)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        _check_service_list(Path.cwd())
        files = rendered_files(all_services())
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    output: Path = arguments.output
    if arguments.check:
        problems = stale(files, output)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(
                "deploy: the manifests are out of date: run ./pants run src/python/tools/deploy:deploy -- render",
                file=sys.stderr,
            )
            return 1
        print(f"{output}: up to date ({len(files)} files)")
        return 0
    if output.exists() and not output.is_dir():
        print(f"deploy: --output {output}: not a directory", file=sys.stderr)
        return 2
    changed = write(files, output)
    print(f"{output}: {len(changed)} of {len(files)} files changed" + "".join(f"\n  {c}" for c in changed))
    return 0


def _check_service_list(root: Path) -> None:
    # Run from a checkout (./pants run's working directory is the build root): every service with a
    # pex_binary must be rendered. Elsewhere (a test sandbox, the PEX on its own) there is nothing to compare.
    found = services_in_checkout(root)
    if found is None:
        return
    missing, unknown = sorted(found - set(SERVICES)), sorted(set(SERVICES) - found)
    if missing or unknown:
        raise DeployError(
            "deploy.services.SERVICES and the services' BUILD files disagree: "
            + "; ".join(
                [*(f"{m} has a pex_binary but is not rendered" for m in missing)]
                + [*(f"{u} is rendered but has no pex_binary" for u in unknown)]
            )
            + " (add it to SERVICES and to the dependencies in src/python/tools/deploy/BUILD)"
        )
