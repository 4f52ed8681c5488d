"""Model files: safetensors weights plus a JSON model card; loading never unpickles.

A model ``NAME.safetensors`` has its card beside it as ``NAME.json``. The card holds everything
needed to use the weights on a new raster: architecture, input bands, normalisation, ground
sampling distance, tile size, the loss it was trained with, and where it came from.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ml_core.errors import InputError, OutputError
from ml_core.learn.model import UNet

CARD_VERSION = 1
PathLike = Union[str, os.PathLike]


@dataclass
class ModelCard:
    """Metadata stored next to the weights; see the module docstring."""

    architecture: dict
    bands: list  # 1-based band indices of the input raster, in model channel order
    mean: list  # per-band normalisation, in the raster's native units
    std: list
    gsd_m: float  # ground sampling distance the model was trained at, metres per pixel
    tile_size: int = 256
    loss: str = "bd_lace_wdice"
    loss_params: dict = field(default_factory=dict)
    threshold: float = 0.5  # probability threshold chosen on held-out blocks
    training_data: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    base_model: Optional[str] = None
    command: Optional[str] = None
    version: int = CARD_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict, source: str = "model card") -> ModelCard:
        """Validate and build a card; raises :class:`InputError` naming ``source``."""
        required = ("architecture", "bands", "mean", "std", "gsd_m")
        missing = [k for k in required if k not in data]
        if missing:
            raise InputError(f"{source} is not a bfe model card: missing {', '.join(missing)}.")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        card = cls(**known)
        n = len(card.bands)
        if n == 0 or len(card.mean) != n or len(card.std) != n:
            raise InputError(f"{source}: bands, mean and std must have the same non-zero length.")
        if card.architecture.get("in_channels", n) != n:
            raise InputError(
                f"{source}: architecture expects {card.architecture['in_channels']} "
                f"input bands but the card lists {n}."
            )
        if any(s <= 0 for s in card.std):
            raise InputError(f"{source}: normalisation std must be positive.")
        if card.gsd_m <= 0:
            raise InputError(f"{source}: gsd_m must be positive.")
        return card


@dataclass
class LoadedModel:
    """A network in eval mode with the card that describes its inputs."""

    net: UNet
    card: ModelCard
    path: Optional[str] = None


def card_path(weights_path: PathLike) -> Path:
    """The JSON card that belongs to ``weights_path``."""
    return Path(weights_path).with_suffix(".json")


def build_network(architecture: dict) -> UNet:
    """Instantiate the network described by a card's ``architecture``."""
    if architecture.get("name", "unet") != "unet":
        raise InputError(f"Unknown architecture {architecture.get('name')!r}; bfe knows 'unet'.")
    kwargs = {
        k: architecture[k]
        for k in ("in_channels", "num_classes", "width", "depth")
        if k in architecture
    }
    return UNet(**kwargs)


def save_model(path: PathLike, net: UNet, card: ModelCard) -> Path:
    """Write weights and card atomically (temporary names, then rename)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_w = path.with_name(path.name + ".part")
        tmp_c = card_path(path).with_name(card_path(path).name + ".part")
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(
            state, str(tmp_w), metadata={"format": "pt", "bfe_card_version": str(CARD_VERSION)}
        )
        tmp_c.write_text(card.to_json(), encoding="utf-8")
        os.replace(tmp_w, path)
        os.replace(tmp_c, card_path(path))
    except OSError as exc:
        raise OutputError(
            f"Cannot write model {path}: {exc.strerror or exc}. Choose a writable folder."
        ) from exc
    return path


def read_card(path: PathLike) -> ModelCard:
    """Read and validate the card of model ``path`` (weights or card path)."""
    cpath = card_path(path)
    if not cpath.exists():
        raise InputError(
            f"Model card {cpath} not found. A bfe model is a .safetensors file with "
            "a .json card of the same name beside it."
        )
    try:
        data = json.loads(cpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"Model card {cpath} is not valid JSON ({exc}). Re-export the model."
        ) from exc
    if not isinstance(data, dict):
        raise InputError(f"Model card {cpath} is not a JSON object. Re-export the model.")
    return ModelCard.from_dict(data, source=f"Model card {cpath}")


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu") -> LoadedModel:
    """Load weights (safetensors only) and card; errors name the file and the fix."""
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.exists():
        raise InputError(f"Model file {path} not found. Pick a .safetensors file written by bfe.")
    card = read_card(path)
    net = build_network(card.architecture)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(
            f"Model file {path} is corrupt or not a safetensors file ({exc}). "
            "Re-download or re-train the model."
        ) from exc
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(
            f"Model file {path} does not match its card's architecture "
            f"{card.architecture}. Re-export the model."
        ) from exc
    net.to(device).eval()
    return LoadedModel(net=net, card=card, path=str(path))


def check_bands(card: ModelCard, band_count: int, raster_name: str) -> None:
    """Raise when the raster lacks a band the model needs."""
    needed = max(card.bands)
    if band_count < needed:
        raise InputError(
            f"The model needs bands {card.bands} but {raster_name} has {band_count} band(s). "
            f"Use a raster with at least {needed} bands, or fine-tune a new model on this raster."
        )
