"""`make helm-lint`: lint and render the chart with Helm's own engine, without a helm binary.

Uses helm-python-sdk (Helm 4 via ctypes, from PyPI). With a `helm` binary at hand the equivalent is
`helm lint --strict deploy/helm/cml-cloud-manager && helm template cml deploy/helm/cml-cloud-manager`.

    python deploy/helm/lint.py [CHART] [--values FILE]... [--print]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def merge(base: dict[str, object], override: dict[str, object]) -> dict[str, object]:
    """Helm's rule for several values files: maps merge key by key, anything else is replaced."""
    result = dict(base)
    for key, value in override.items():
        old = result.get(key)
        result[key] = merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chart", nargs="?", default=str(Path(__file__).parent / "cml-cloud-manager"))
    parser.add_argument("--values", "-f", action="append", default=[], help="a values file (repeatable)")
    parser.add_argument("--print", action="store_true", help="print the rendered manifests")
    args = parser.parse_args()
    try:
        import helm_python as helm
    except ImportError:
        print("helm-python-sdk is missing: pip install helm-python-sdk", file=sys.stderr)
        return 2
    values: dict[str, object] = {}
    for path in args.values:
        values = merge(values, yaml.safe_load(Path(path).read_text()) or {})
    report = helm.lint(args.chart, values or None, strict=True)
    failed = bool(report["errors"])
    for message in report["messages"]:
        print(f"[{SEVERITY.get(message['severity'], message['severity'])}] {message['path']}: {message['error']}")
        failed |= message["severity"] >= 2
    for error in report["errors"]:
        print(f"[ERROR] {error}")
    try:
        with helm.Chart.load(args.chart) as chart:
            manifests = chart.render(values or None, name="cml", namespace="cml", is_install=True)
    except helm.HelmError as exc:
        print(f"[ERROR] render: {exc}")
        return 1
    count = sum(1 for text in manifests.values() for doc in yaml.safe_load_all(text) if isinstance(doc, dict))
    if args.print:
        for path in sorted(manifests):
            if manifests[path].strip():
                print(f"---\n# Source: {path}\n{manifests[path].strip()}")
    print(f"{args.chart}: {'FAILED' if failed else 'ok'}, {count} manifests rendered", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
