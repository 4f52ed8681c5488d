"""The review panel shows the mapper-style flags (``ml_core.osm.checks``) of the current
proposal as text, read from the ``flags`` field that extraction writes on the layer."""

from __future__ import annotations

import pytest
from qgis.core import QgsFeature, QgsGeometry, QgsProject, QgsVectorLayer


def _proposals(rows: list, with_flags: bool = True) -> QgsVectorLayer:
    """A memory new-buildings layer of 10 m squares: ``rows`` of (score, flags)."""
    fields = "field=score:double&field=status:string" + ("&field=flags:string" * with_flags)
    layer = QgsVectorLayer(f"Polygon?crs=EPSG:3857&{fields}", "new buildings", "memory")
    features = []
    for i, (score, flags) in enumerate(rows):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromWkt(
            f"POLYGON(({i * 20} 0,{i * 20 + 10} 0,{i * 20 + 10} 10,{i * 20} 10,{i * 20} 0))"))
        f.setAttributes([score, "proposed", *([flags] if with_flags else [])])
        features.append(f)
    layer.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(layer)
    return layer


@pytest.fixture
def panel(qgis_canvas, qgis_new_project):
    from bfe_plugin.review.panel import ReviewPanel

    yield ReviewPanel(qgis_canvas)
    QgsProject.instance().removeAllMapLayers()


def test_the_current_proposals_flags_are_shown_as_text(panel):
    layer = _proposals([(0.9, "crosses_mapped,unsquare"), (0.8, ""), (0.7, None),
                        (0.6, "tiny,sliver,crosses_building,new_check")])
    panel.set_layer(layer)
    assert panel.flags.text() == "Flags: crosses a mapped building, unsquare corners"
    panel.skip()
    assert panel.flags.text() == "No flags"
    panel.skip()
    assert panel.flags.text() == "No flags"  # NULL: an unflagged proposal
    panel.skip()
    assert panel.flags.text() == ("Flags: tiny (under 5 m²), sliver (narrower than 1.5 m), "
                                  "crosses another proposal, new_check")
    panel.previous()
    panel.previous()
    panel.previous()
    assert "unsquare corners" in panel.flags.text()


def test_a_layer_without_flags_shows_none(panel):
    panel.set_layer(_proposals([(0.9, "")], with_flags=False))
    assert panel.current is not None and panel.flags.text() == ""
