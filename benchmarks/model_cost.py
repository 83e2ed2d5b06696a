"""Parameters and multiply-accumulates (MACs) of every registered model.

    .venv/bin/python benchmarks/model_cost.py [--durations 1 3] [--model NAME=JSON_PARAMS ...]

MACs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on one
waveform in eval mode: convolutions and matrix products only (it reports FLOPs =
2 x MACs); FFTs, norms and activations are left out. Numbers quoted in the model
docstrings come from this script.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from voxmetric.models import build_model

DEFAULT_MODELS = [
    ("sincnet_tdnn", {}),
    ("sincnet_tdnn", {"tdnn_channels": 128, "tdnn_stats_channels": 384, "embedding_dim": 128}),
    ("xvector", {}),
    ("ecapa_tdnn", {}),
    ("ecapa_tdnn", {"channels": 1024}),
]


def count_macs(model: torch.nn.Module, num_samples: int) -> int:
    """MACs of one forward pass on a ``(1, num_samples)`` waveform."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, num_samples))
    return counter.get_total_flops() // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[1.0, 3.0], help="input durations in seconds")
    parser.add_argument("--model", action="append", default=[], help="NAME or NAME=JSON parameters (repeatable)")
    args = parser.parse_args()
    specs = DEFAULT_MODELS
    if args.model:
        specs = [(item.split("=", 1)[0], json.loads(item.split("=", 1)[1]) if "=" in item else {}) for item in args.model]

    header = ["model", "params", "params (M)"] + [f"GMACs {d:g} s" for d in args.durations] + ["GMACs / s audio"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, params in specs:
        model = build_model(name, **params).eval()
        n_params = sum(p.numel() for p in model.parameters())
        macs = [count_macs(model, round(d * model.sample_rate_hz)) for d in args.durations]
        # Per-second rate from the longest input: shorter ones are dominated by edge frames.
        rate = macs[-1] / args.durations[-1]
        label = name + (" " + json.dumps(params, separators=(",", ":")) if params else "")
        cells = [label, f"{n_params:,}", f"{n_params / 1e6:.2f}"] + [f"{m / 1e9:.3f}" for m in macs] + [f"{rate / 1e9:.3f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
