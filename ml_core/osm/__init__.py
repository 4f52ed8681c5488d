"""OpenStreetMap at both ends: buildings from an extract (``read``), the OSM-imagery offset
(``offset``), mapper-style validation and conflation (``checks``) and export for JOSM (``export``).
"""
