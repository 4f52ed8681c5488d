"""The probability thresholds of a model: one home for where they come from and where they go.

A model chooses its thresholds on held-out blocks (``ml_core.learn.threshold``) and keeps them
in its card. ``bfe predict`` copies them into the probability raster's metadata, so extraction
and scoring of that raster use the same ones. The user overrides either, and the override is
what is reported. Nothing else holds a threshold.

- ``building``: building probability (band 1) above which a pixel belongs to a building;
- ``seed``: interior probability (band 2 of instance models) above which a pixel seeds a
  building of its own when touching buildings are separated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from osgeo import gdal

from ml_core.config import DEFAULT_THRESHOLD, THRESHOLD_KEY

SEED_THRESHOLD_KEY = "BFE_SEED_THRESHOLD"
DEFAULT_SEED_THRESHOLD = 0.5


@dataclass(frozen=True)
class Thresholds:
    """Building and seed thresholds (see the module docstring)."""

    building: float = DEFAULT_THRESHOLD
    seed: float = DEFAULT_SEED_THRESHOLD

    @classmethod
    def of_card(cls, card) -> Thresholds:
        """The thresholds a model card holds (``seed_threshold`` is absent in old cards)."""
        return cls(float(card.threshold),
                   float(getattr(card, "seed_threshold", DEFAULT_SEED_THRESHOLD)))

    @classmethod
    def of_raster(cls, ds: gdal.Dataset) -> Thresholds:
        """The thresholds stored in a probability raster; the defaults where none is."""
        return cls(float(ds.GetMetadataItem(THRESHOLD_KEY) or DEFAULT_THRESHOLD),
                   float(ds.GetMetadataItem(SEED_THRESHOLD_KEY) or DEFAULT_SEED_THRESHOLD))

    def write(self, ds: gdal.Dataset) -> None:
        """Store both in a probability raster's metadata."""
        ds.SetMetadataItem(THRESHOLD_KEY, repr(self.building))
        ds.SetMetadataItem(SEED_THRESHOLD_KEY, repr(self.seed))

    def overridden(self, building: Optional[float] = None,
                   seed: Optional[float] = None) -> Thresholds:
        """These thresholds with the user's values, where given, in their place."""
        return replace(self, building=self.building if building is None else building,
                       seed=self.seed if seed is None else seed)
