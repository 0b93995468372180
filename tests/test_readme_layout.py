"""The README's layout section names every package and module of src/, so that it cannot fall behind the tree."""

from __future__ import annotations

import re
from pathlib import Path

import cml_cloud_manager

ROOT = Path(cml_cloud_manager.__file__).parent
README = Path(__file__).parent.parent / "README.md"


def layout() -> dict[str, str]:
    """Package path ("" for the top level) -> the text of its entry in the layout block."""
    section = README.read_text().split("## Layout\n", 1)[1]
    block = section.split("```\n", 2)[1].split("src/cml_cloud_manager/\n", 1)[1]
    src = block.splitlines()
    src = src[: next(i for i, line in enumerate(src) if not line.startswith(" "))]  # up to tests/
    entries: dict[str, str] = {"": ""}
    current = ""
    for line in src:
        if match := re.match(r"^  ([a-z_]+(?:/[a-z_]+)*)/\s", line):
            current = match[1]
            entries[current] = line
        elif line.startswith("   ") and current:
            entries[current] += " " + line  # continues the entry above
        else:
            current = ""
            entries[""] += " " + line
    return entries


def modules(package: Path) -> set[str]:
    return {path.name for path in package.glob("*.py") if path.name != "__init__.py"}


def test_every_package_and_module_is_in_the_layout() -> None:
    entries = layout()
    packages = sorted(
        str(path.parent.relative_to(ROOT))
        for path in ROOT.rglob("__init__.py")
        if path.parent != ROOT and "migrations" not in path.parts
    )
    missing = [f"{package}/" for package in packages if package not in entries]
    for package in ["", *packages]:
        words = set(re.findall(r"[\w.]+\.py", entries.get(package, "")))
        missing += [f"{package}/{name}".lstrip("/") for name in sorted(modules(ROOT / package) - words)]
    assert missing == [], "README's layout section does not name these; add them where they belong"


def test_the_layout_names_nothing_that_is_gone() -> None:
    entries = layout()
    gone = [package for package in entries if package and not (ROOT / package).is_dir()]
    for package, text in entries.items():
        if package and (ROOT / package).is_dir():
            gone += [
                f"{package}/{name}" for name in re.findall(r"\b\w+\.py\b", text) if not (ROOT / package / name).exists()
            ]
    assert gone == []
