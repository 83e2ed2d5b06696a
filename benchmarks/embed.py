"""Whole-file embedding speed: naive window-by-window vs shared-frame extraction.

    .venv/bin/python benchmarks/embed.py                  # the table (a few minutes on 2 cores)
    .venv/bin/python benchmarks/embed.py --quick          # one repeat of the naive rows
    .venv/bin/python benchmarks/embed.py --hour           # + a 1-hour file, shared frames (memory)
    .venv/bin/python benchmarks/embed.py --deviation      # only the accuracy section

Seed-style windows (3 s every 0.1 s) over ``../shared/data/long_60s.flac`` (72.5 s of
speech; path relative to the repository root, ``--audio`` for another file). Every
configuration (model x method x threads) runs in its own process, so that its peak
resident memory (``getrusage`` max RSS: torch's allocations included, which
tracemalloc does not see) is its own. RTF = extraction seconds / audio seconds (the
audio is decoded once beforehand and not timed); min and median over repeats after
one warm-up run.

The deviation section compares embeddings on the real-speech files of
``../shared/data/real`` (random weights, or ``--checkpoint``): the shared path on
its frame-aligned windows against the naive path on the original windows, for the
exact (local) models (the effect of moving windows by up to half a frame hop) and
for the approximate shared path of non-local models (instance norm / CMN over a
15 s block (the default ``block_s``) instead of every window).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from voxmetric import audio
from voxmetric.evaluate.extract import choose_method, embed_waveform
from voxmetric.models import build_model

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = REPO_ROOT.parent / "shared" / "data" / "long_60s.flac"
DEFAULT_REAL = REPO_ROOT.parent / "shared" / "data" / "real"

# (label, registry name, params): seed sizes. SincTDNN with batch norm is the configuration
# the bundled pretrained model uses (local frames); x-vector without CMN likewise.
MODELS = {
    "sinctdnn-bn": ("sinctdnn", {"waveform_normalize": False, "instance_normalize": False}),
    "sinctdnn-seed": ("sinctdnn", {}),
    "xvector-nocmn": ("xvector", {"cmn": False}),
    "xvector": ("xvector", {}),
    "ecapa": ("ecapa", {}),
}
# (model label, method): the speed table. Approximate shared rows run as fast as the exact ones.
SPEED_ROWS = [
    ("sinctdnn-bn", "naive"),
    ("sinctdnn-bn", "shared"),
    ("xvector-nocmn", "naive"),
    ("xvector-nocmn", "shared"),
    ("ecapa", "naive"),
]


def rss_mb() -> float:
    """Current resident set size (Linux /proc), MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(label: str, checkpoint: str | None = None) -> torch.nn.Module:
    if checkpoint:
        from voxmetric.inference.loading import load_network

        return load_network(checkpoint)[0]
    name, params = MODELS[label]
    torch.manual_seed(0)
    return build_model(name, **params).eval()


def child(spec: dict) -> dict:
    """One configuration, in this process: times and memory."""
    torch.set_num_threads(spec["threads"])
    model = build(spec["model"])
    waveform = audio.read(spec["audio"])
    if spec["tile_s"]:
        waveform = np.resize(waveform, round(spec["tile_s"] * audio.SAMPLE_RATE_HZ))
    base_mb = rss_mb()
    kwargs = dict(window_s=3.0, step_s=0.1, method=spec["method"], batch_size=spec["batch_size"])
    if spec["repeats"] > 1 or not spec["tile_s"]:
        embed_waveform(model, waveform[: 10 * audio.SAMPLE_RATE_HZ], **kwargs)  # warm-up (allocator, kernels)
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        embed_waveform(model, waveform, **kwargs)
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"audio_s": waveform.size / audio.SAMPLE_RATE_HZ, "times": times, "base_mb": base_mb, "peak_mb": peak_mb}


def run_child(spec: dict) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, cwd=REPO_ROOT
    )
    if result.returncode != 0:
        raise SystemExit(f"configuration {spec} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def speed_table(args: argparse.Namespace) -> None:
    rows = [row for row in SPEED_ROWS if not args.models or row[0] in args.models]
    rows += [("sinctdnn-bn", "shared", 3600.0)] if args.hour else []
    print(f"\nfile: {args.audio}, 3 s windows every 0.1 s; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start; torch {torch.__version__}")
    header = ["model", "method", "threads", "audio s", "RTF min", "RTF median", "repeats",
              "speed-up (min)", "peak RSS MB", "RSS over baseline MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    naive_min: dict[tuple[str, int], float] = {}
    for row in rows:
        label, method = row[0], row[1]
        tile_s = row[2] if len(row) > 2 else 0.0
        for threads in args.threads:
            if tile_s and threads != max(args.threads):
                continue
            repeats = 1 if tile_s else (args.naive_repeats if method == "naive" else args.repeats)
            spec = dict(model=label, method=method, threads=threads, audio=str(args.audio), repeats=repeats,
                        tile_s=tile_s, batch_size=args.batch_size)
            out = run_child(spec)
            rtf = [t / out["audio_s"] for t in out["times"]]
            if method == "naive":
                naive_min[(label, threads)] = min(rtf)
            speedup = naive_min.get((label, threads)) if method != "naive" and not tile_s else None
            cells = [label, method, str(threads), f"{out['audio_s']:.1f}", f"{min(rtf):.4f}",
                     f"{statistics.median(rtf):.4f}", str(repeats),
                     f"{speedup / min(rtf):.1f}x" if speedup else "",
                     f"{out['peak_mb']:.0f}", f"{out['peak_mb'] - out['base_mb']:.0f}"]
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def deviation_table(args: argparse.Namespace) -> None:
    paths = sorted(Path(args.real).glob("*/*.flac"))[:: args.every]
    if not paths:
        print(f"\n(no deviation section: no real speech under {args.real})")
        return
    torch.set_num_threads(max(args.threads))
    waveforms = [audio.read(p) for p in paths]
    print(f"\ndeviation on {len(paths)} files of {args.real} "
          f"({sum(w.size for w in waveforms) / 16000:.0f} s), "
          f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'random weights (seed 0)'}")
    header = ["model", "shared path", "max abs diff", "max |diff| / max |naive|", "1 - min cosine", "1 - mean cosine"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    labels = [None] if args.checkpoint else ["sinctdnn-bn", "sinctdnn-seed", "xvector-nocmn", "xvector"]
    for label in labels:
        model = build(label, args.checkpoint)
        kind = "exact, windows on frame grid" if choose_method(model) == "shared" else "approximate (block norm)"
        diffs, scales, cosines = [], [], []
        for waveform in waveforms:
            naive = embed_waveform(model, waveform, method="naive")
            shared = embed_waveform(model, waveform, method="shared")
            diffs.append(np.abs(naive - shared).max())
            scales.append(np.abs(naive).max())
            cosines.append(cosine(naive, shared))
        cells = [label or args.checkpoint, kind, f"{max(diffs):.2e}", f"{max(d / s for d, s in zip(diffs, scales)):.2e}",
                 f"{1 - min(cosines):.1e}", f"{1 - np.mean(cosines):.1e}"]
        print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, help="file to embed (default: %(default)s)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the shared rows")
    parser.add_argument("--naive-repeats", type=int, default=2, help="timed runs of the naive rows")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per forward pass (naive)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), help="only the speed rows of these models")
    parser.add_argument("--quick", action="store_true", help="one timed run per naive row, three per shared row")
    parser.add_argument("--hour", action="store_true", help="also a 1-hour file (the audio tiled), shared frames")
    parser.add_argument("--deviation", action="store_true", help="only the deviation section")
    parser.add_argument("--no-deviation", action="store_true", help="skip the deviation section")
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL, help="real speech for the deviation section")
    parser.add_argument("--every", type=int, default=4, help="use every N-th file of --real")
    parser.add_argument("--checkpoint", help="deviation of this trained model instead of random weights")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.quick:
        args.naive_repeats, args.repeats = 1, 3
    if not args.deviation:
        if not args.audio.is_file():
            raise SystemExit(f"benchmark audio not found: {args.audio} (give another file with --audio)")
        speed_table(args)
    if not args.no_deviation:
        deviation_table(args)


if __name__ == "__main__":
    main()
