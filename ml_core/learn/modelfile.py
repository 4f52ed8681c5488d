"""Model files: safetensors weights plus a JSON model card; loading never unpickles.

A model ``NAME.safetensors`` has its card beside it as ``NAME.json``. The card holds everything
needed to use the weights on a new raster: architecture, input bands, normalisation, ground
sampling distance, tile size, the loss it was trained with, and where it came from.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ml_core.config import TrainOptions
from ml_core.errors import InputError, OutputError
from ml_core.io.atomic import atomic_output
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
    loss: str = "bd_lace_wdice"
    loss_params: dict = field(default_factory=dict)
    threshold: float = 0.5  # probability threshold chosen on held-out blocks
    seed_threshold: float = 0.5  # interior probability that seeds a building (4 classes)
    gsd_range_m: Optional[list] = None  # [min, max] pixel sizes trained for (scale augmentation)
    training_data: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    base_model: Optional[str] = None
    command: Optional[str] = None
    version: int = CARD_VERSION
    weights_id: Optional[str] = None  # also in the weights' metadata: a pair saved together

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict, source: str = "model card") -> ModelCard:
        """Validate and build a card; raises :class:`InputError` naming ``source``."""
        required = ("architecture", "bands", "mean", "std", "gsd_m")
        missing = [k for k in required if k not in data]
        if missing:
            raise InputError(f"{source} is not a bfe model card: missing {', '.join(missing)}.")
        # Keys this version does not know are ignored, e.g. older cards' tile_size (the
        # training crop size, never read).
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        validate_card(known, source)
        return cls(**known)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value) -> bool:
    return isinstance(value, list) and all(_number(v) for v in value)


# Card fields: (check, what the value must be); fields not listed here are free-form.
_FIELD_TYPES = {
    "architecture": (lambda v: isinstance(v, dict), "an object"),
    "bands": (lambda v: isinstance(v, list) and all(_integer(b) and b >= 1 for b in v),
              "a list of 1-based band numbers"),
    "mean": (_numbers, "a list of numbers"),
    "std": (_numbers, "a list of numbers"),
    "gsd_m": (_number, "a number (metres per pixel)"),
    "loss": (lambda v: isinstance(v, str), "a loss name"),
    "loss_params": (lambda v: isinstance(v, dict), "an object"),
    "threshold": (lambda v: _number(v) and 0 <= v <= 1, "a number between 0 and 1"),
    "seed_threshold": (lambda v: _number(v) and 0 <= v <= 1, "a number between 0 and 1"),
    "gsd_range_m": (lambda v: v is None or (_numbers(v) and len(v) == 2 and 0 < v[0] <= v[1]),
                    "null or [smallest, largest] positive pixel sizes in metres"),
    "training_data": (lambda v: isinstance(v, list), "a list"),
    "metrics": (lambda v: isinstance(v, dict), "an object"),
    "created": (lambda v: isinstance(v, str), "a date string"),
    "base_model": (lambda v: v is None or isinstance(v, str), "a file name or null"),
    "command": (lambda v: v is None or isinstance(v, str), "a command line or null"),
    "version": (_integer, "a whole number"),
    "weights_id": (lambda v: v is None or isinstance(v, str), "a string or null"),
}
_ARCH_LIMITS = {"in_channels": (1, 64), "num_classes": (1, 16),
                **{f.name: (f.metadata["min"], f.metadata["max"])
                   for f in fields(TrainOptions) if f.name in ("width", "depth")}}


def validate_card(data: dict, source: str) -> None:
    """Types and ranges of every card field, before any of it is used (a crafted card must not
    reach the network constructor); :class:`InputError` naming ``source`` and the field."""
    for key, (check, what) in _FIELD_TYPES.items():
        if key in data and not check(data[key]):
            raise InputError(f"{source}: {key} must be {what}, not {data[key]!r}. "
                             "Re-export the model.")
    n = len(data["bands"])
    if n == 0 or len(data["mean"]) != n or len(data["std"]) != n:
        raise InputError(f"{source}: bands, mean and std must have the same non-zero length.")
    if any(s <= 0 for s in data["std"]):
        raise InputError(f"{source}: normalisation std must be positive.")
    if data["gsd_m"] <= 0:
        raise InputError(f"{source}: gsd_m must be positive.")
    arch = data["architecture"]
    if arch.get("name", "unet") != "unet":
        raise InputError(f"{source}: unknown architecture {arch.get('name')!r}; bfe knows "
                         "'unet'.")
    for key, (low, high) in _ARCH_LIMITS.items():
        value = arch.get(key)
        if value is not None and not (_integer(value) and low <= value <= high):
            raise InputError(f"{source}: architecture {key} must be a whole number between "
                             f"{low} and {high}, not {value!r}. Re-export the model.")
    if arch.get("in_channels", n) != n:
        raise InputError(f"{source}: architecture expects {arch['in_channels']} "
                         f"input bands but the card lists {n}.")


def working_gsd(card: ModelCard, pixel_m: float) -> tuple[float, bool]:
    """(pixel size the network should see for a raster of ``pixel_m``, whether that raster lies
    outside the card's trained range). Inside ``gsd_range_m`` the raster's own pixel size is
    used (no resampling); outside it, the nearest end of the range; a card without a range has
    one pixel size, ``gsd_m``."""
    if not card.gsd_range_m:
        return float(card.gsd_m), False
    low, high = (float(v) for v in card.gsd_range_m)
    inside = low <= pixel_m <= high
    return (float(pixel_m) if inside else min(max(pixel_m, low), high)), not inside


@dataclass
class LoadedModel:
    """A network in eval mode with the card that describes its inputs."""

    net: UNet
    card: ModelCard
    path: Optional[str] = None


def card_path(weights_path: PathLike) -> Path:
    """The JSON card that belongs to ``weights_path``."""
    return Path(weights_path).with_suffix(".json")


def _network_args(architecture: dict) -> dict:
    if architecture.get("name", "unet") != "unet":
        raise InputError(f"Unknown architecture {architecture.get('name')!r}; bfe knows 'unet'.")
    return {k: architecture[k] for k in ("in_channels", "num_classes", "width", "depth")
            if k in architecture}


def build_network(architecture: dict) -> UNet:
    """Instantiate the network described by a card's ``architecture``."""
    return UNet(**_network_args(architecture))


_HEADER_MAX = 100 << 20  # bytes; a larger safetensors header is not a bfe model
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1}


def read_header(path: PathLike) -> tuple[dict, dict]:
    """(tensor name -> shape, metadata) from a safetensors header, reading no tensor data;
    :class:`InputError` when the header or its offsets do not describe this file."""
    path = Path(path)
    bad = (f"Model file {path} is corrupt or not a safetensors file (%s). Re-download or "
           "re-train the model.")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or not 2 <= n <= min(size - 8, _HEADER_MAX):
                raise InputError(bad % "bad header length")
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(bad % exc) from exc
    if not isinstance(header, dict):
        raise InputError(bad % "header is not an object")
    metadata = header.pop("__metadata__", None) or {}
    shapes, data_size = {}, size - 8 - n
    for name, info in header.items():
        try:
            shape = [int(d) for d in info["shape"]]
            start, end = (int(o) for o in info["data_offsets"])
            count = math.prod(shape) * _DTYPE_BYTES[info["dtype"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(bad % f"tensor {name!r}: {exc}") from exc
        if not 0 <= start <= end <= data_size or end - start != count:
            raise InputError(bad % f"tensor {name!r} lies outside the file (truncated?)")
        shapes[name] = tuple(shape)
    return shapes, metadata if isinstance(metadata, dict) else {}


def check_weights(path: PathLike, card: ModelCard) -> None:
    """The weights' tensor names and shapes must be those of the card's architecture, checked
    from the header on a network built without memory (``meta`` device) before any real one."""
    shapes, metadata = read_header(path)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in
                    UNet(**_network_args(card.architecture)).state_dict().items()}
    if shapes != expected:
        wrong = sorted(set(shapes) ^ set(expected)) or sorted(
            k for k in shapes if shapes[k] != expected[k])
        raise InputError(f"Model file {path} does not match its card's architecture "
                         f"{card.architecture} (first difference: {wrong[0]}). Re-export the "
                         "model.")
    stored = metadata.get("bfe_weights_id")
    if stored and card.weights_id and stored != card.weights_id:
        raise InputError(f"Model file {path} and its card {card_path(path)} come from different "
                         "saves (an interrupted write?). Re-train or restore the model.")


def save_model(path: PathLike, net: UNet, card: ModelCard) -> Path:
    """Write weights and card atomically: both to temporary files, then both renamed.

    They share a ``weights_id``, so a pair torn apart by a kill between the two renames is
    refused on loading instead of being used mismatched."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"Cannot write model {path}: {exc.strerror or exc}. Choose a writable folder."
        ) from exc
    card = replace(card, weights_id=uuid.uuid4().hex)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    metadata = {"format": "pt", "bfe_card_version": str(CARD_VERSION),
                "bfe_weights_id": card.weights_id}
    with atomic_output(path) as tmp_w, atomic_output(card_path(path)) as tmp_c:
        save_file(state, str(tmp_w), metadata=metadata)
        tmp_c.write_text(card.to_json(), encoding="utf-8")
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


def check_model(path: PathLike) -> ModelCard:
    """The validated card of model ``path`` once its weights' header matches it, without loading
    any tensor: commands check a model this way before writing anything."""
    path = Path(path).with_suffix(".safetensors")
    if not path.exists():
        raise InputError(f"Model file {path} not found. Pick a .safetensors file written by bfe.")
    card = read_card(path)
    check_weights(path, card)
    return card


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu") -> LoadedModel:
    """Load weights (safetensors only) and card; errors name the file and the fix."""
    path = Path(path).with_suffix(".safetensors")
    card = check_model(path)
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
