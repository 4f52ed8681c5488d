"""PNG preview: overlay outlines land where the polygons are."""

import numpy as np
from osgeo import gdal, ogr, osr

from ml_core.preview import write_preview


def test_outline_drawn_at_polygon(tmp_path):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    raster = tmp_path / "img.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(raster), 100, 80, 3, gdal.GDT_Byte)
    ds.SetGeoTransform((500000, 1, 0, 4000080, 0, -1))
    ds.SetProjection(srs.ExportToWkt())
    for b in range(3):
        ds.GetRasterBand(b + 1).WriteArray(np.full((80, 100), 100 + b, np.uint8))
    ds = None
    vec = tmp_path / "b.gpkg"
    src = ogr.GetDriverByName("GPKG").CreateDataSource(str(vec))
    lyr = src.CreateLayer("b", srs, ogr.wkbPolygon)
    feat = ogr.Feature(lyr.GetLayerDefn())
    # pixels x 20..39, y 10..29 (y grows downwards from 4000080)
    feat.SetGeometry(ogr.CreateGeometryFromWkt(
        "POLYGON((500020 4000070,500040 4000070,500040 4000050,500020 4000050,500020 4000070))"))
    lyr.CreateFeature(feat)
    src = None

    out = write_preview(raster, tmp_path / "p.png", [(vec, None, (255, 0, 0))])
    img = gdal.Open(str(out)).ReadAsArray()
    assert img.shape == (3, 80, 100)
    red = (img[0] == 255) & (img[1] == 0)
    ys, xs = np.nonzero(red)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 39, 10, 29)
    assert not red[15:25, 25:35].any()  # interior is not painted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.gpkg", "img.tif", "p.png"]
