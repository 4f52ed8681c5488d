"""The label classes of a training mask, and how instance classes are made from building ids.

Masks are uint8. A binary (2-class) mask holds 0 background and 1 building. An instance mask
(4 classes, the default) splits both, so that the network learns where one building ends and
the next begins (the idea of RAMP's boundary and close-contact classes):

- 0 background;
- 1 building interior;
- 2 building edge: building pixels within ``edge_m`` of another building or of background;
- 3 contact: background pixels that have two different buildings within ``contact_m / 2``,
  i.e. background in a gap narrower than about ``contact_m`` between two buildings;
- 255 unknown (never trained on).

Widths are given in metres and turned into pixels of the grid they are drawn on, so any pixel
size works. An unmapped building is background, and so are its edge and contact: missing
labels stay missing.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BACKGROUND, INTERIOR, EDGE, CONTACT = 0, 1, 2, 3
UNKNOWN = 255
BUILDING_CLASSES = (INTERIOR, EDGE)
CLASS_NAMES = {2: ("background", "building"),
               4: ("background", "interior", "edge", "contact")}
EDGE_M = 1.0  # default ring of building pixels next to another building or background
CONTACT_M = 2.0  # default: background in a gap narrower than this between two buildings is contact


def is_building(mask: np.ndarray) -> np.ndarray:
    """Building pixels (interior or edge) of a binary or instance mask."""
    return (mask == INTERIOR) | (mask == EDGE)


def to_binary(mask: np.ndarray) -> np.ndarray:
    """Collapse an instance mask to 0/1/255 (edge is building, contact is background)."""
    out = np.where(is_building(mask), INTERIOR, BACKGROUND).astype(np.uint8)
    out[mask == UNKNOWN] = UNKNOWN
    return out


def for_classes(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """The mask a network with ``num_classes`` outputs trains on (2: binary, 4: as it is)."""
    if num_classes == 2:
        return to_binary(mask)
    if num_classes == len(CLASS_NAMES[4]):
        return mask
    raise ValueError(f"No label scheme for {num_classes} classes; bfe knows 2 and 4.")


def radius_px(width_m: float, pixel_m: float) -> int:
    """A width in metres as a whole number of pixels (at least 1 when the width is positive)."""
    return max(1, round(width_m / pixel_m)) if width_m > 0 else 0


def instance_classes(ids: np.ndarray, edge_px: int, contact_px: int) -> np.ndarray:
    """Classes 0-3 from a raster of building ids (0 none, 1..n one per building).

    Edge: building pixels whose ``(2 edge_px + 1)`` square holds another id (or none). Contact:
    background pixels whose ``(2 contact_px + 1)`` square holds two different ids.
    """
    building = ids > 0
    out = np.where(building, INTERIOR, BACKGROUND).astype(np.uint8)
    if edge_px > 0:
        size = 2 * edge_px + 1
        other = ndimage.maximum_filter(ids, size) != ndimage.minimum_filter(ids, size)
        out[building & other] = EDGE
    if contact_px > 0:
        size = 2 * contact_px + 1
        top = ndimage.maximum_filter(ids, size)
        big = np.iinfo(ids.dtype).max
        low = ndimage.minimum_filter(np.where(building, ids, big), size)
        out[~building & (low != big) & (top != low)] = CONTACT
    return out
