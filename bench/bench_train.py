"""Seconds per training step (forward, backward, AdamW) of the U-Net at widths 16 and 32 on CPU.

Justifies the default width: run ``python bench/bench_train.py [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ml_core.learn.device import describe_device
from ml_core.learn.model import UNet

DEFAULT_OUT = Path(__file__).parent / "results" / "train.json"


def time_steps(width: int, batch: int = 4, size: int = 256, steps: int = 5,
               warmup: int = 1) -> dict:
    """Median seconds per optimiser step for one width on a ``batch x 3 x size x size`` input."""
    torch.manual_seed(0)
    net = UNet(3, 2, width=width).train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 2, (batch, size, size))
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    params = sum(p.numel() for p in net.parameters())
    return {"width": width, "params": params, "size_mb_fp32": round(params * 4 / 2**20, 2),
            "s_per_step": round(sorted(times)[len(times) // 2], 3),
            "input": [batch, 3, size, size]}


def run(widths: tuple = (16, 32), steps: int = 5) -> dict:
    """Benchmark every width; returns a JSON-serialisable dict."""
    return {"device": describe_device(torch.device("cpu")), "torch": torch.__version__,
            "results": [time_steps(w, steps=steps) for w in widths]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", nargs="?", const=str(DEFAULT_OUT), default=str(DEFAULT_OUT),
                        help="Where to write the results (default: %(default)s).")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    result = run(steps=args.steps)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
