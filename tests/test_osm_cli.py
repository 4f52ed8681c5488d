"""``bfe export`` on the command line: output, messages and exit status."""

from __future__ import annotations

from osgeo import gdal
from osm_helpers import SAMPLE_BUILDINGS

from ml_core.cli import main


def _footprints(tmp_path):
    fp = tmp_path / "fp.gpkg"
    gdal.VectorTranslate(str(fp), str(SAMPLE_BUILDINGS), layerName="new_buildings")
    return fp


def test_export_osm(tmp_path, capsys):
    out = tmp_path / "new.osm"
    assert main(["export", str(_footprints(tmp_path)), "-o", str(out), "--source", "OAM"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count('<tag k="source" v="OAM"/>') == 391
    assert "391 buildings" in capsys.readouterr().out


def test_export_refuses_flagged_with_status_2(tmp_path, capsys):
    out = tmp_path / "new.geojson"
    code = main(["export", str(_footprints(tmp_path)), "-o", str(out), "--on-flagged", "refuse"])
    err = capsys.readouterr().err
    assert code == 2 and "flagged" in err and "unsquare" in err and "Traceback" not in err
    assert not out.exists()


def test_export_bad_output_and_missing_layer(tmp_path, capsys):
    fp = _footprints(tmp_path)
    assert main(["export", str(fp), "-o", str(tmp_path / "x.txt")]) == 2
    assert ".osm" in capsys.readouterr().err
    assert main(["export", str(fp), "-o", str(tmp_path / "x.osm"), "--layer", "nope"]) == 2
    assert "no layer 'nope'" in capsys.readouterr().err
