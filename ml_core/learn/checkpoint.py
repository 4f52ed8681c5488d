"""Training state beside a model, for ``--resume``: never pickle.

``NAME.last.safetensors`` (+ card) holds the last epoch's weights; ``NAME.last.state.safetensors``
the optimiser tensors and torch's RNG state, ``NAME.last.state.json`` everything else (loop
scalars, numpy's RNG state, the optimiser's parameter groups). Both state files are written
through :func:`ml_core.io.atomic.atomic_output`, so a crash never leaves a torn state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ml_core.errors import InputError
from ml_core.io.atomic import atomic_output

PathLike = Union[str, os.PathLike]


def last_path(out_model: PathLike) -> Path:
    """The last-epoch checkpoint beside ``out_model`` (``NAME.last.safetensors``)."""
    out = Path(out_model)
    return out.with_name(out.stem + ".last.safetensors")


def state_paths(out_model: PathLike) -> tuple[Path, Path]:
    """The training state files beside ``out_model``: (tensors, JSON)."""
    last = last_path(out_model)
    return (last.with_name(last.stem + ".state.safetensors"),
            last.with_name(last.stem + ".state.json"))


def save_state(out_model: PathLike, optimizer: torch.optim.Optimizer, scalars: dict) -> None:
    """Optimiser tensors and the torch RNG state as safetensors; everything else as JSON."""
    tensor_path, json_path = state_paths(out_model)
    sd = optimizer.state_dict()
    tensors = {"rng.torch": torch.get_rng_state()}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            val = val if torch.is_tensor(val) else torch.tensor(val)
            tensors[f"opt.{idx}.{key}"] = val.detach().cpu().contiguous()
    data = {**scalars, "param_groups": sd["param_groups"]}
    with atomic_output(tensor_path) as tmp_t, atomic_output(json_path) as tmp_j:
        save_file(tensors, str(tmp_t))
        tmp_j.write_text(json.dumps(data), encoding="utf-8")


def _as_live(saved: Any, live: Any) -> Any:
    """A parameter-group value read from JSON in the type the live optimiser uses: JSON has no
    tuples, and optimisers keep e.g. AdamW's ``betas`` as one."""
    return tuple(saved) if isinstance(live, tuple) else saved


def _groups(saved: list, optimizer: torch.optim.Optimizer) -> list:
    live = optimizer.state_dict()["param_groups"]
    if len(saved) != len(live):
        raise ValueError(f"{len(saved)} parameter groups saved, the optimiser has {len(live)}")
    return [{k: _as_live(v, now.get(k)) for k, v in group.items()}
            for group, now in zip(saved, live)]


def load_state(out_model: PathLike, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what :func:`save_state` wrote into ``optimizer`` and torch's RNG; return scalars."""
    tensor_path, json_path = state_paths(out_model)
    if not (tensor_path.exists() and json_path.exists()):
        raise InputError(f"Cannot resume: {tensor_path.name} or {json_path.name} is missing beside "
                         f"{out_model}. Train without --resume.")
    try:
        tensors = load_file(str(tensor_path))
        data = json.loads(json_path.read_text(encoding="utf-8"))
        state: dict = {}
        for name, val in tensors.items():
            if name.startswith("opt."):
                _, idx, key = name.split(".", 2)
                state.setdefault(int(idx), {})[key] = val
        groups = _groups(data.pop("param_groups"), optimizer)
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        torch.set_rng_state(tensors["rng.torch"])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, AttributeError,
            RuntimeError) as exc:  # a torn or edited state: never a traceback
        raise InputError(f"Cannot resume: the training state {tensor_path.name} / "
                         f"{json_path.name} beside {out_model} is corrupt ({type(exc).__name__}: "
                         f"{exc}). Train without --resume.") from exc
    return data


__all__ = ["last_path", "load_state", "save_state", "state_paths"]
