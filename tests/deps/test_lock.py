"""uv.lock is the one source of installed versions: it agrees with pyproject.toml, pins uv everywhere uv is
bootstrapped, and is what this environment has installed (docs/adr/0004-locked-dependencies.md)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = tomllib.loads((REPO / "uv.lock").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
# `python -m venv` seeds these before uv runs; uv leaves them (they are the venv's tools, not the app's).
VENV_SEED = {"pip", "setuptools"}

Spec = tuple[str, tuple[str, ...], str, str]


def _declared() -> set[Spec]:
    """pyproject.toml's requirements, each as (name, extras, specifier, marker), extras' marked as uv records them."""
    specs: set[Spec] = set()
    groups = {None: PYPROJECT["project"]["dependencies"], **PYPROJECT["project"]["optional-dependencies"]}
    for extra, requirements in groups.items():
        for text in requirements:
            req = Requirement(text)
            marker = f"extra == '{extra}'" if extra else (str(req.marker) if req.marker else "")
            specs.add((canonicalize_name(req.name), tuple(sorted(req.extras)), str(req.specifier), marker))
    return specs


def _locked_project() -> dict[str, object]:
    entries: list[dict[str, object]] = [p for p in LOCK["package"] if canonicalize_name(p["name"]) == PROJECT]
    (entry,) = entries
    return entry


def _locked_versions() -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for package in LOCK["package"]:
        versions.setdefault(canonicalize_name(package["name"]), set()).add(package["version"])
    return versions


def test_the_lock_matches_pyproject() -> None:
    recorded = _locked_project()["metadata"]["requires-dist"]  # type: ignore[index]
    locked: set[Spec] = {
        (
            canonicalize_name(r["name"]),
            tuple(sorted(r.get("extras", []))),
            str(Requirement(f"x{r.get('specifier', '')}").specifier),
            r.get("marker", ""),
        )
        for r in recorded
    }
    declared = _declared()
    assert declared == locked, (
        "pyproject.toml and uv.lock disagree: run `make lock` and commit uv.lock.\n"
        f"  only in pyproject.toml: {sorted(declared - locked)}\n  only in uv.lock: {sorted(locked - declared)}"
    )


def test_every_pinned_version_satisfies_its_range() -> None:
    versions = _locked_versions()
    for name, _, specifier, _ in _declared():
        assert versions.get(name), f"{name} is declared but not locked: run `make lock`"
        for version in versions[name]:
            assert Requirement(f"x{specifier}").specifier.contains(version, prereleases=True), (name, version)


def test_uv_is_the_same_version_wherever_it_is_bootstrapped() -> None:
    (locked,) = _locked_versions()["uv"]
    makefile = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    dockerfile = re.search(r"pip install --no-cache-dir uv==(\S+)", (REPO / "Dockerfile").read_text())
    assert makefile and makefile.group(1) == locked, "Makefile's UV_VERSION differs from uv.lock's uv"
    assert dockerfile and dockerfile.group(1) == locked, "the Dockerfile's uv differs from uv.lock's uv"


def test_the_environment_has_exactly_the_locked_versions() -> None:
    versions = _locked_versions()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    unlocked = {
        name: version
        for name, version in installed.items()
        if name not in VENV_SEED and version not in versions.get(name, set())
    }
    assert not unlocked, f"installed but not at a locked version (run `make install`): {unlocked}"
