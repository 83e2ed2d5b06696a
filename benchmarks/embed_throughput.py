"""Files per second, one thread, steady state: many short files and one long file, bundled models.

    python benchmarks/embed_throughput.py                          # current tree
    python benchmarks/embed_throughput.py --before /tmp/old-tree   # side by side with another checkout
    python benchmarks/embed_throughput.py --resemblyzer-python /path/to/venv/bin/python

Short files: ``--files`` (100) excerpts of 3.4 s cut from the real recordings of
``../shared/data/real`` (cycling through them), written once as 16 kHz FLAC under the
system temporary folder, embedded with each bundled model's default front-end
(``model.embed_files``: read, quality, VAD, level, network). Long file:
``../shared/data/long_60s.flac`` (72.5 s) with the seed's 3 s windows every 0.1 s
(``set_frontend(window_s=3.0, step_s=0.1)``, one file per pass). Every case runs in its own
process with ``torch.set_num_threads(1)`` and ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS`` at 1; one warm-up pass over 10 files (or the long file
once) is not timed; the figures are the best of ``--repeats`` timed passes, as files per
second of wall time and per second of the process's CPU time (with ``--rounds N``, the
process with the median CPU time of N, the trees alternating). On a loaded machine the wall
figure mostly measures the load; the CPU figure is the one to compare (the load average is
printed before and after). With ``--before DIR`` every case also runs with ``DIR`` first on
``PYTHONPATH``, interleaved, and the table gives the CPU-time speed-up and the largest
absolute difference between the two trees' embeddings.

Resemblyzer (``VoiceEncoder.embed_utterance(preprocess_wav(path))``: its own VAD and 1.6 s
partial windows, 1.3 a second, on the long file) runs in the interpreter given by
``--resemblyzer-python``, by default ``../resemblyzer-venv/bin/python`` next to the
repository when it exists (a separate venv: ``python3 -m venv ../resemblyzer-venv &&
../resemblyzer-venv/bin/pip install torch==2.13.0 && ../resemblyzer-venv/bin/pip install
resemblyzer 'setuptools<81'``: the torch pin first, or pip pulls a multi-GB CUDA build), or is
skipped with a note; ``x Resemblyzer`` is each model's CPU-time rate over Resemblyzer's on the same input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared" / "data"
MODELS = ("sinctdnn-aam", "ecapa-aam")
RESEMBLYZER_PYTHON = REPO_ROOT.parent / "resemblyzer-venv" / "bin" / "python"


def short_files(count: int, seconds: float = 3.4) -> list[str]:
    import numpy as np

    from voxmetric import audio

    folder = Path(tempfile.gettempdir()) / f"voxmetric-bench-short-{seconds:g}s"
    folder.mkdir(exist_ok=True)
    sources = sorted((SHARED / "real").glob("*/*.flac"))
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}.flac"
        if not path.exists():
            waveform = audio.read(sources[i % len(sources)])
            length = int(seconds * audio.SAMPLE_RATE_HZ)
            start = (i // len(sources)) * length // 2
            piece = np.resize(waveform[start:], length)  # wraps round when the recording is short
            audio.write(path, piece)
        paths.append(str(path))
    return paths


def child(spec: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    paths = spec["paths"]
    if spec["system"] == "resemblyzer":
        from resemblyzer import VoiceEncoder, preprocess_wav

        encoder = VoiceEncoder("cpu", verbose=False)
        embed_all = lambda items: np.stack([encoder.embed_utterance(preprocess_wav(p)) for p in items])  # noqa: E731
    else:
        from voxmetric.inference.speaker_model import load_model

        model = load_model(spec["system"])
        if spec["windows"]:
            model.set_frontend(window_s=3.0, step_s=0.1)
        embed_all = model.embed_files
    embed_all(paths[:10])  # warm-up
    walls, cpus = [], []
    for _ in range(spec["repeats"]):
        wall, cpu = time.perf_counter(), time.process_time()
        matrix = embed_all(paths)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"seconds": min(walls), "cpu_seconds": min(cpus), "files": len(paths),
            "embeddings": np.asarray(matrix).tolist()}


def run_child(spec: dict, python: str, pythonpath: str | None) -> dict:
    # One thread for every library, not only torch: Resemblyzer's preprocessing (librosa, numpy's
    # BLAS) otherwise spreads over all cores and its CPU time is about twice its wall time.
    env = {**os.environ, **{name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                    "NUMBA_NUM_THREADS")}}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run([python, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, env=env,
                            cwd=REPO_ROOT)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_rounds(spec: dict, trees: list[tuple[str, str]], rounds: int) -> dict[str, dict]:
    """Each tree's child ``rounds`` times, the trees alternating (so that a change of load
    hits both); per tree the round with the median CPU time (the first error, if any)."""
    runs: dict[str, list[dict]] = {tree: [] for tree, _ in trees}
    for _ in range(rounds):
        for tree, path in trees:
            runs[tree].append(run_child(spec, sys.executable, path))
    results = {}
    for tree, outs in runs.items():
        failed = [out for out in outs if "error" in out]
        ordered = sorted(outs, key=lambda out: out["cpu_seconds"]) if not failed else failed
        results[tree] = ordered[(len(ordered) - 1) // 2]
    return results


def rates(out: dict) -> tuple[float, float]:
    """(files per wall second, files per CPU second) of a child's result."""
    return out["files"] / out["seconds"], out["files"] / out["cpu_seconds"]


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100, help="short files (default 100)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per case; the best counts (default 2)")
    parser.add_argument("--before", help="another voxmetric checkout, run side by side")
    parser.add_argument("--rounds", type=int, default=1,
                        help="processes per tree and case, alternating with --before; the median counts (default 1)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="bundled models (default: both)")
    parser.add_argument("--resemblyzer-python", default=str(RESEMBLYZER_PYTHON),
                        help="python of a venv with resemblyzer installed (default: %(default)s if it exists)")
    parser.add_argument("--no-long", action="store_true", help="skip the long file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    shorts = short_files(args.files)
    long_path = str(SHARED / "long_60s.flac")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"{os.cpu_count()} CPUs ({cpu}), load average {os.getloadavg()[0]:.2f} at start; 1 thread; "
          f"best of {args.repeats}")
    print("| input | system | tree | files/s (wall) | files per CPU s | x Resemblyzer (CPU) "
          "| speed-up vs before (CPU) | max abs diff vs before |")
    print("|---|---|---|---|---|---|---|---|")
    cases = [(f"{len(shorts)} x 3.4 s", shorts, False)] + ([] if args.no_long else [("long_60s, 3 s / 0.1 s windows",
                                                                           [long_path], True)])
    for label, paths, windows in cases:
        resemblyzer = None
        if not Path(args.resemblyzer_python).exists():
            print(f"| {label} | Resemblyzer | - | skipped: no {args.resemblyzer_python} "
                  f"(see --help) | | | | |", flush=True)
        else:
            out = run_child({"system": "resemblyzer", "paths": paths, "windows": False, "repeats": args.repeats},
                            args.resemblyzer_python, None)
            if "error" in out:
                print(f"| {label} | Resemblyzer | - | failed: {out['error']} | | | | |", flush=True)
            else:
                wall, resemblyzer = rates(out)
                print(f"| {label} | Resemblyzer | - | {wall:.2f} | {resemblyzer:.2f} | 1 | | |", flush=True)
        for system in args.models:
            spec = {"system": system, "paths": paths, "windows": windows, "repeats": args.repeats}
            trees = [("current", str(REPO_ROOT))] + ([("before", args.before)] if args.before else [])
            results = run_rounds(spec, trees, args.rounds)
            for tree, out in results.items():
                if "error" in out:
                    print(f"| {label} | {system} | {tree} | failed: {out['error']} | | | | |", flush=True)
                    continue
                wall, cpu_rate = rates(out)
                versus = f"{cpu_rate / resemblyzer:.2f}" if resemblyzer else ""
                extra = ["", ""]
                before = results.get("before")
                if tree == "current" and before and "error" not in before:
                    extra = [f"{cpu_rate / rates(before)[1]:.2f}x",
                             f"{np.abs(np.array(out['embeddings']) - np.array(before['embeddings'])).max():.2e}"]
                print(f"| {label} | {system} | {tree} | {wall:.2f} | {cpu_rate:.2f} | {versus} | {extra[0]} "
                      f"| {extra[1]} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
