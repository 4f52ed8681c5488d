"""bfe engine: building footprints from incomplete OSM labels, without QGIS.

Imports torch, numpy and GDAL (osgeo) only; the QGIS plugin and the CLI are thin front ends.
"""

__version__ = "0.1.0"
