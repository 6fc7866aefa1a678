"""``deploy render [--check] [--output DIR]``: the Kubernetes manifests of every service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from deploy.render import OutputError, check_output, rendered_files, stale, write
from deploy.services import SERVICES, DeployError, all_services, services_in_checkout

DEFAULT_OUTPUT = Path("deploy/k8s")
RENDER = "./pants run src/python/tools/deploy:deploy -- render"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deploy", description="Kubernetes manifests of the services.")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="write deploy/k8s/ (bases per service, overlays dev and prod)")
    render.add_argument("--check", action="store_true", help="change nothing; exit 1 naming what is stale")
    render.add_argument(
        "--output",
        # A string, not a Path: Path("") is ".", and an empty value must be refused, not read as here.
        default=str(DEFAULT_OUTPUT),
        help="where the manifests go (default: deploy/k8s, run in the build root)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``render`` (or ``render --check``); returns the exit code: 0 done or up to date, 1 stale,
    2 bad use (the message names the bad value). Errors are printed, never raised."""
    arguments = _parser().parse_args(argv)
    if not arguments.output.strip():
        print(
            f"deploy: --output {arguments.output!r}: empty; name a directory (default: {DEFAULT_OUTPUT})",
            file=sys.stderr,
        )
        return 2
    output = Path(arguments.output)
    try:
        check_output(output, writing=not arguments.check)
        _check_service_list(Path.cwd())
        files = rendered_files(all_services())
        if arguments.check:
            return _check(files, output)
        changed, kept = write(files, output)
    except (DeployError, OutputError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"deploy: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{output}: {len(changed)} of {len(files)} files changed" + "".join(f"\n  {c}" for c in changed))
    for relative in kept:
        print(
            f"deploy: kept {output / relative}: not rendered, but not render's to delete (hand-written, or in a"
            " folder render no longer writes): remove it by hand",
            file=sys.stderr,
        )
    return 0


def _check(files: dict[str, str], output: Path) -> int:
    if not output.is_dir():
        print(f"deploy: --output {output}: no such directory: render it first: {RENDER}", file=sys.stderr)
        return 1
    problems = stale(files, output)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"deploy: the manifests are out of date: run {RENDER}", file=sys.stderr)
        return 1
    print(f"{output}: up to date ({len(files)} files)")
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
