"""Imports point one way: entry points > apps/ (composition) > slices > shared machinery > base modules.

Read from the source with `ast`, every import counted, those inside functions too. `python -m tests.test_layers`
prints the package graph and the pairs that import each other."""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

import cml_cloud_manager

ROOT = Path(cml_cloud_manager.__file__).parent
PACKAGE = ROOT.name

# What may import what: a layer imports its own and those below it, never one above.
LAYERS: list[tuple[str, set[str]]] = [
    ("entry point", {"cli", "__main__", "api_server", "background_worker", "sandbox"}),
    ("composition", {"apps"}),
    ("slice", {"workers", "labs", "licensing", "activity", "system", "health"}),
    ("machinery", {"storage", "events", "jobs", "auth", "aws", "cml", "web"}),
    ("base", {"__init__", "config", "errors", "logs", "stopping"}),
]
LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """The top-level package or module of ours that `module` (dotted, absolute) is in; "__init__" for the
    package itself and names imported from it."""
    parts = module.split(".")
    if len(parts) > 1 and ((ROOT / parts[1]).is_dir() or (ROOT / f"{parts[1]}.py").is_file()):
        return parts[1]
    return "__init__"


def imported(path: Path, code: str | None = None) -> set[str]:
    """The absolute names of our modules (or of names in them) that a file (or `code` placed there) imports."""
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    package = parts[:-1]  # what `from .` means, for a module and for an __init__ alike
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text() if code is None else code, str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            if node.module:
                found.add(module)
            else:  # `from .. import x`: x may be a module
                found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == PACKAGE or name.startswith(f"{PACKAGE}.")}


def graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the files importing it."""
    edges: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(ROOT.rglob("*.py")):
        source = unit_of(".".join([PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]))
        for name in imported(path):
            target = unit_of(name)
            if target != source:
                edges[source][target].add(str(path.relative_to(ROOT)))
    return edges


def two_way(edges: dict[str, dict[str, set[str]]]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in itertools.combinations(sorted(edges), 2) if b in edges[a] and a in edges[b]]


def wrong_way(edges: dict[str, dict[str, set[str]]]) -> list[str]:
    found = []
    for source, targets in sorted(edges.items()):
        for target, files in sorted(targets.items()):
            if LAYER_OF[target] < LAYER_OF[source]:
                src, dst = LAYERS[LAYER_OF[source]][0], LAYERS[LAYER_OF[target]][0]
                found.append(f"{source} ({src}) imports {target} ({dst}) in {', '.join(sorted(files))}")
    return found


def test_every_package_has_a_layer() -> None:
    units = {
        unit_of(f"{PACKAGE}.{p.stem}") for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    assert units - set(LAYER_OF) == set(), "put the new package or module in a layer of LAYERS"


def test_imports_point_down() -> None:
    # A slice never imports apps/; machinery never imports a slice or apps/; base modules import only each other.
    assert wrong_way(graph()) == []


def test_no_two_packages_import_each_other() -> None:
    edges = graph()
    assert two_way(edges) == [], "; ".join(f"{a} <-> {b}" for a, b in two_way(edges))


def test_the_checks_see_a_wrong_way_import_inside_a_function() -> None:
    # The rules above hold only if imports are found wherever they are: at the top, deferred, relative or not.
    code = "def f():\n    from ..workers import service\n    import cml_cloud_manager.apps.api\n"
    assert {unit_of(name) for name in imported(ROOT / "jobs" / "scheduler.py", code)} == {"workers", "apps"}
    edges: dict[str, dict[str, set[str]]] = {"jobs": {"workers": {"x"}}, "workers": {"jobs": {"y"}}}
    assert two_way(edges) == [("jobs", "workers")]
    assert wrong_way(edges) == ["jobs (machinery) imports workers (slice) in x"]


if __name__ == "__main__":
    edges = graph()
    for source in sorted(edges):
        print(f"{source:18} -> {' '.join(sorted(edges[source]))}")
    pairs = two_way(edges)
    print(f"\n{len(pairs)} two-way package pairs" + "".join(f"\n  {a} <-> {b}" for a, b in pairs))
