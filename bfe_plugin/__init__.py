"""bfe QGIS plugin: building footprints from incomplete OSM labels, a thin layer over ml_core."""


def classFactory(iface):  # noqa: N802 (QGIS entry point)
    """QGIS calls this to create the plugin; ml_core is made importable first."""
    from .deps import ensure_import_paths

    ensure_import_paths()
    from .plugin import BfePlugin

    return BfePlugin(iface)
