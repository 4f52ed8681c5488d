"""QGIS-style layer paths: one parser for every reader and writer."""

from ml_core.io.vector import split_layer_name


def test_split_layer_name():
    assert split_layer_name("a/b.gpkg") == ("a/b.gpkg", None)
    assert split_layer_name("a/b.gpkg|layername=new_buildings") == ("a/b.gpkg", "new_buildings")
    assert split_layer_name("b.gpkg|layername=x|subset=fid>2") == ("b.gpkg", "x")
    assert split_layer_name("b.gpkg|layerid=0") == ("b.gpkg", None)  # the file, as before
