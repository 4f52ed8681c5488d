"""Forward + backward time of the losses on CPU, against one U-Net training step.

The paper's joint loss ``bd_lace_wdice`` on 4x2x256x256 logits should take well under 25 ms and
at most 5 % of a width-32 U-Net step (forward, backward, AdamW) on 4x3x256x256, timed in the same
run. Run ``python bench/bench_losses.py [--json PATH]``; ``run()`` returns the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from ml_core.learn.device import describe_device
from ml_core.learn.losses import LOSSES, get_loss
from ml_core.learn.model import UNet

DEFAULT_OUT = Path(__file__).parent / "results" / "losses.json"
TARGET_MS = 25.0
TARGET_SHARE = 0.05


def _times_ms(fn: Callable[[], None], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _summary(times: list[float]) -> dict:
    return {
        "median_ms": round(statistics.median(times), 2),
        "min_ms": round(min(times), 2),
        "max_ms": round(max(times), 2),
        "runs": len(times),
    }


def _batch(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and a mask of random rectangular buildings, with a few unknown rectangles."""
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(batch, 2, size, size, generator=gen)
    target = torch.zeros(batch, size, size, dtype=torch.long)
    for n in range(batch):
        for value, count in ((1, 40), (255, 3)):
            for y, x, h, w in torch.randint(0, size - 8, (count, 4), generator=gen).tolist():
                target[n, y : y + 4 + h % 30, x : x + 4 + w % 30] = value
    return logits.requires_grad_(True), target


def loss_step_ms(name: str, logits: torch.Tensor, target: torch.Tensor, repeats: int) -> dict:
    """Forward + backward of one loss."""
    loss = get_loss(name)

    def step() -> None:
        logits.grad = None
        loss(logits, target).backward()

    return _summary(_times_ms(step, repeats, warmup=5))


def unet_step_ms(batch: int, size: int, repeats: int) -> dict:
    """Forward, backward (of a negligible mean) and AdamW step of the width-32 U-Net."""
    torch.manual_seed(0)
    net = UNet(in_channels=3, num_classes=2, width=32, depth=4).train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    x = torch.randn(batch, 3, size, size)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        net(x).mean().backward()
        opt.step()

    return _summary(_times_ms(step, repeats, warmup=1))


def run(repeats: int = 30, unet_repeats: int = 5, batch: int = 4, size: int = 256) -> dict:
    """All figures as a JSON-serialisable dict."""
    logits, target = _batch(batch, size)
    load_before = os.getloadavg()[0]
    joint = loss_step_ms("bd_lace_wdice", logits, target, repeats)
    unet = unet_step_ms(batch, size, unet_repeats)
    share = joint["median_ms"] / unet["median_ms"]
    return {
        "device": describe_device(torch.device("cpu")),
        "torch": torch.__version__,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "logits": [batch, 2, size, size],
        "bd_lace_wdice": joint,
        "unet_w32_step": unet,
        "loss_share_of_step": round(share, 4),
        "target": {"median_ms": TARGET_MS, "share": TARGET_SHARE},
        "meets_target": joint["median_ms"] < TARGET_MS and share <= TARGET_SHARE,
        "all_losses_median_ms": {
            name: loss_step_ms(name, logits, target, repeats // 3)["median_ms"] for name in LOSSES
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--json", default=str(DEFAULT_OUT), help="Where to write the results (%(default)s)."
    )
    parser.add_argument("--repeats", type=int, default=30, help="Timed runs per loss.")
    args = parser.parse_args()
    result = run(repeats=args.repeats)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    joint, unet = result["bd_lace_wdice"], result["unet_w32_step"]
    print(
        f"bd_lace_wdice forward+backward on {result['logits']}: {joint['median_ms']} ms median "
        f"(min {joint['min_ms']}, max {joint['max_ms']}, {joint['runs']} runs)\n"
        f"U-Net width 32 training step: {unet['median_ms']} ms median\n"
        f"loss / step: {100 * result['loss_share_of_step']:.2f} % "
        f"(target < {TARGET_MS:g} ms and <= {100 * TARGET_SHARE:g} %: "
        f"{'met' if result['meets_target'] else 'NOT met'})\n"
        f"{result['device']}, torch {result['torch']}, "
        f"1-min load average before/after {result['load_average_1min']}"
    )
    for name, ms in result["all_losses_median_ms"].items():
        print(f"  {name:14s} {ms:7.2f} ms")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
