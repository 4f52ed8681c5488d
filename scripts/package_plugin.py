"""Build dist/bfe_plugin.zip for QGIS "Install from ZIP": the plugin plus a vendored ml_core.

The ZIP holds ``bfe_plugin/`` with ``metadata.txt`` (copied from the repository root), the icon,
styles, and ``bfe_plugin/_vendor/ml_core`` (with base models under ``ml_core/models`` when
present), so the plugin works where ml_core is not pip-installed. No ``__pycache__``.

Usage: python scripts/package_plugin.py [--out dist/bfe_plugin.zip]
"""

from __future__ import annotations

import argparse
import zipfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN = "bfe_plugin"
SKIP_DIRS = {"__pycache__", "_vendor", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".part"}


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS for part in rel.parts) or path.suffix in SKIP_SUFFIXES:
            continue
        if path.is_file():
            yield path


def plugin_entries(repo: Path = REPO, vendor: bool = True) -> list[tuple[Path, str]]:
    """(source file, path inside the plugin folder) for everything the plugin ships.

    ``vendor=False`` leaves out ml_core: a plugin linked from a checkout finds it there.
    """
    entries = [(p, p.relative_to(repo / PLUGIN).as_posix()) for p in _files(repo / PLUGIN)]
    entries.append((repo / "metadata.txt", "metadata.txt"))
    if vendor:
        entries += [(p, "_vendor/ml_core/" + p.relative_to(repo / "ml_core").as_posix())
                    for p in _files(repo / "ml_core")]
    return entries


def build_zip(out: Path, repo: Path = REPO) -> Path:
    """Write the plugin ZIP to ``out`` and return it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for src, rel in plugin_entries(repo):
            zf.write(src, f"{PLUGIN}/{rel}")
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "bfe_plugin.zip")
    out = build_zip(parser.parse_args().out)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
