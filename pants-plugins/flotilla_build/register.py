"""In-repo Pants plugin: a lib's distribution takes its version from the VERSION file beside its BUILD.

The version of a lib lives in one place, ``src/python/libs/<lib>/VERSION``: the lib reads it at
run time (``__version__``, ``/info``), the release tool bumps it, and this rule puts it into the
generated ``setup.py`` of the lib's ``python_distribution`` (BUILD files cannot read files).
"""

from __future__ import annotations

import re

from pants.backend.python.util_rules.package_dists import SetupKwargs, SetupKwargsRequest
from pants.engine.fs import DigestContents, GlobMatchErrorBehavior, PathGlobs
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import Target
from pants.engine.unions import UnionRule

# Release versions only (PEP 440's public form, as the release tool writes them): 1.2.3, 1.2.3rc1.
_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?$")


class VersionFileSetupKwargsRequest(SetupKwargsRequest):
    @classmethod
    def is_applicable(cls, target: Target) -> bool:
        return True


@rule
async def setup_kwargs_from_version_file(request: VersionFileSetupKwargsRequest) -> SetupKwargs:
    address = request.target.address
    kwargs = request.explicit_kwargs.copy()
    if "version" in kwargs:
        raise ValueError(f"{address}: leave `version` out of python_artifact(); it is read from VERSION")
    # The nearest VERSION at or above the distribution's folder: a lib's test helpers in a subfolder
    # (flotilla_kit/testing) are versioned with their lib.
    folders = [address.spec_path]
    while "/" in folders[-1]:
        folders.append(folders[-1].rsplit("/", 1)[0])
    contents = await Get(
        DigestContents,
        PathGlobs(
            [f"{folder}/VERSION" for folder in folders],
            glob_match_error_behavior=GlobMatchErrorBehavior.ignore,
        ),
    )
    found = {content.path: content.content.decode().strip() for content in contents}
    path = next((f"{folder}/VERSION" for folder in folders if f"{folder}/VERSION" in found), None)
    if path is None:
        raise ValueError(f"{address}: no VERSION file in {address.spec_path} or above")
    version = found[path]
    if not _VERSION.match(version):
        raise ValueError(f"{path}: {version!r} is not a release version such as 1.2.3")
    return SetupKwargs({**kwargs, "version": version}, address=address)


def rules():
    return [*collect_rules(), UnionRule(SetupKwargsRequest, VersionFileSetupKwargsRequest)]
