"""Run every benchmark, write one JSON file per benchmark and a readable summary.

Each ``bench/bench_*.py`` module exposes ``run() -> dict``; its figures are written to
``OUT/<name>.json`` and summarised in ``OUT/summary.md``. ``bench_cluster`` (1 and 2 Dask
workers against one process) needs the ``cluster`` extra, which ``make setup`` installs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flatten(prefix: str, value, rows: list) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, rows)
    else:
        rows.append((prefix, value))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--only", nargs="*", help="benchmark names, e.g. losses predict")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE.parent))
    lines = ["# bfe benchmarks", ""]
    failed = False
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            result = _load(path).run()
        except Exception as exc:  # report and continue with the other benchmarks
            failed = True
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["wall_s"] = round(time.perf_counter() - start, 1)
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
        rows: list = []
        _flatten("", result, rows)
        lines += [f"## {name}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in rows]
        lines.append("")
    summary = "\n".join(lines)
    (args.out / "summary.md").write_text(summary)
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
