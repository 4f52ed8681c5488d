"""Write a QGIS project (.qgz) with the sample raster and its OSM buildings, for ``make qgis``.

Usage: python scripts/qgis_project.py [--out out/bfe_sample.qgz]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qgis.core import QgsApplication, QgsFillSymbol, QgsProject, QgsRasterLayer, QgsVectorLayer

REPO = Path(__file__).resolve().parent.parent
RASTER = REPO / "data" / "sample" / "banepa_sample.tif"
BUILDINGS = REPO / "data" / "sample" / "banepa_sample_buildings.gpkg"


def write_project(out: Path) -> Path:
    """Create the project at ``out`` (layers stored with relative paths)."""
    project = QgsProject.instance()
    project.clear()
    raster = QgsRasterLayer(str(RASTER), "banepa_sample")
    buildings = QgsVectorLayer(f"{BUILDINGS}|layername=buildings", "OSM buildings", "ogr")
    if not (raster.isValid() and buildings.isValid()):
        raise SystemExit(f"Cannot open the sample data {RASTER} / {BUILDINGS}.")
    buildings.renderer().setSymbol(QgsFillSymbol.createSimple(
        {"style": "no", "outline_color": "255,255,0", "outline_width": "0.4"}))
    project.addMapLayers([raster, buildings])
    project.setCrs(raster.crs())
    out.parent.mkdir(parents=True, exist_ok=True)
    if not project.write(str(out)):
        raise SystemExit(f"Cannot write {out}: {project.error()}")
    project.clear()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bfe_sample.qgz")
    out = parser.parse_args().out.resolve()
    app = QgsApplication([], False)
    app.initQgis()
    print(write_project(out))
    app.exitQgis()


if __name__ == "__main__":
    main()
