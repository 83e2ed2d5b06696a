#!/usr/bin/env python
"""Warm-start weights for sinctdnn-aam with pyannote's sinc kernels, from the first bundled model.

The first bundled sinctdnn-aam was trained with ``kernel_normalization: ideal_bandpass``,
whose kernels are ``2 band_k / fs`` times pyannote's (and use a very slightly different
window). The first layer is |conv| -> max-pool -> batch norm, so scaling filter ``k`` by
``c_k = fs / (2 band_k)`` only scales its batch-norm input: multiplying that layer's
running mean by ``c_k`` and running variance by ``c_k**2`` gives (almost) the same network
with the new kernels. This writes it with ``kernel_normalization: pyannote`` in its params.

    python recipes/bundled/convert_sinc_init.py [SOURCE] [OUT]
"""

from __future__ import annotations

import argparse
import sys

import torch

from voxmetric.inference.loading import read_source
from voxmetric.inference.weights import write_weights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", default="sinctdnn-aam")
    parser.add_argument("out", nargs="?", default="data/bundled/init/sinctdnn-aam-pyannote.safetensors")
    args = parser.parse_args(argv)
    source = read_source(args.source)
    model_config, weights = source.model, source.weights
    params = dict(model_config["params"])
    if params.get("kernel_normalization", "pyannote") != "ideal_bandpass":
        print(f"error: {args.source} does not use ideal_bandpass kernels", file=sys.stderr)
        return 1
    from voxmetric.models import build_model

    old = build_model(model_config["name"], **params)
    old.load_state_dict(weights)
    low, high = old.sincnet.convs[0].cutoffs_hz()
    scale = (old.sample_rate_hz / (2 * (high - low))).detach().double()
    state = {k: v.clone() for k, v in weights.items()}
    state["sincnet.norms.0.running_mean"] = (state["sincnet.norms.0.running_mean"].double() * scale).float()
    state["sincnet.norms.0.running_var"] = (state["sincnet.norms.0.running_var"].double() * scale**2).float()
    params["kernel_normalization"] = "pyannote"
    out_meta = {
        "model": {"name": model_config["name"], "params": params},
        "embedding": source.frontend.to_dict(),
        "calibration": None,
        "threshold": None,
        "description": f"{args.source} converted to pyannote sinc kernels (warm start only)",
        "training": {},
    }
    from pathlib import Path

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_weights(args.out, state, out_meta)
    new = build_model(model_config["name"], **params)
    new.load_state_dict(state)
    old.eval(), new.eval()
    x = torch.randn(2, 48000) * 0.1
    with torch.no_grad():
        a, b = old(x), new(x)
    cos = torch.nn.functional.cosine_similarity(a, b).min().item()
    print(f"wrote {args.out}; scale {scale.min():.1f}-{scale.max():.1f}; embedding cosine old vs new {cos:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
