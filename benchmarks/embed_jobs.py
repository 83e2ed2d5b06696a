"""Files per second of wall time on many short files: threads against worker processes (``--jobs``).

    python benchmarks/embed_jobs.py                       # 2000 files, N = every core
    python benchmarks/embed_jobs.py --files 1000 --jobs 4 --models ecapa-aam
    python benchmarks/embed_jobs.py --files 500 --busy 1   # a machine another job shares

For each bundled model, three cases, each in a fresh process (``voxmetric.inference.batch.
embed_each``, the path of ``embed``, ``verify --trials``, ``identify --list``, ``enroll`` and
``calibrate``): one process with one thread, one process with ``--jobs`` threads (torch's
intra-op threads), and ``--jobs`` worker processes of one thread each
(``embed_each(..., jobs=N)``). The wall time counts everything after the model is loaded,
including starting the workers (a few seconds: each imports torch and receives the model);
the first 10 files are embedded once before timing in the thread cases, not in the worker case
(whose workers start inside the timed call). The files are excerpts of 3.4 s of the
recordings of ``../shared/data/real`` that are long enough, at seeded random offsets. Also printed: the
largest absolute difference between the worker processes' embeddings and the one-thread
process's (float rounding: a different thread count sums in another order). An excerpt without
speech would fail in every case alike and count as a file (``embed_each(skip_errors=True)``);
the table says how many there were.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import MODELS, REPO_ROOT, SHARED  # noqa: E402


def excerpts(count: int, seconds: float = 3.4) -> list[str]:
    """``count`` excerpts of ``seconds`` from the recordings of ``../shared/data/real`` that are
    long enough, at offsets drawn with a fixed seed (written once as 16 kHz FLAC under the system
    temporary folder)."""
    import tempfile

    import numpy as np

    from voxmetric import audio

    folder = Path(tempfile.gettempdir()) / f"voxmetric-bench-excerpts-{seconds:g}s"
    folder.mkdir(exist_ok=True)
    length = int(seconds * audio.SAMPLE_RATE_HZ)
    sources = [path for path in sorted((SHARED / "real").glob("*/*.flac")) if audio.info(path).frames >= length]
    offsets = np.random.default_rng(0).random(count)
    paths = []
    for i in range(count):
        path = folder / f"{i:05d}.flac"
        if not path.exists():
            waveform = audio.read(sources[i % len(sources)])
            start = int(offsets[i] * (len(waveform) - length))
            audio.write(path, waveform[start:start + length])
        paths.append(str(path))
    return paths


def child(spec: dict) -> dict:
    import numpy as np
    import torch

    from voxmetric.inference.batch import embed_each
    from voxmetric.inference.parallel import available_cpus
    from voxmetric.inference.speaker_model import load_model

    torch.set_num_threads(spec["threads"])
    model = load_model(spec["model"])
    paths = spec["paths"]
    if spec["jobs"] == 1:
        embed_each(model, paths[:10], progress=False, skip_errors=True)  # warm-up
    start = time.perf_counter()
    done = embed_each(model, paths, progress=False, skip_errors=True, jobs=spec["jobs"])
    seconds = time.perf_counter() - start
    matrix = np.stack([done.embeddings[p] for p in paths if p in done.embeddings])
    return {"seconds": seconds, "files": len(paths), "failed": len(done.failures), "cpus": available_cpus(),
            "embeddings": matrix.tolist()}


def run_child(spec: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                            env=env, cwd=REPO_ROOT)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="short files (default 2000)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="threads / workers (default: every core)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="bundled models (default: both)")
    parser.add_argument("--busy", type=int, default=0,
                        help="other CPU-bound processes running meanwhile (a shared machine; default 0)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    paths = excerpts(args.files)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        measure(args, paths)
    finally:
        for process in busy:
            process.kill()


def measure(args, paths: list[str]) -> None:
    import numpy as np

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"{os.cpu_count()} CPUs ({cpu}), load average {os.getloadavg()[0]:.2f} at start; "
          f"{len(paths)} files of 3.4 s; N = {args.jobs}; {args.busy} other busy process(es)")
    print("| model | case | wall s | files/s (wall) | x one thread | max abs diff vs one thread |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        cases = [("1 process, 1 thread", 1, 1), (f"1 process, {args.jobs} threads", args.jobs, 1),
                 (f"--jobs {args.jobs} (worker processes)", 1, args.jobs)]
        reference = None
        for label, threads, jobs in cases:
            out = run_child({"model": model, "paths": paths, "threads": threads, "jobs": jobs})
            if "error" in out:
                print(f"| {model} | {label} | failed: {out['error']} | | | |", flush=True)
                continue
            rate = out["files"] / out["seconds"]
            if reference is None:
                print(f"({out['failed']} of {out['files']} files without speech)", flush=True)
            matrix = np.array(out["embeddings"])
            if reference is None:
                reference = (rate, matrix)
            diff = np.abs(matrix - reference[1]).max()
            print(f"| {model} | {label} | {out['seconds']:.1f} | {rate:.1f} | {rate / reference[0]:.2f} "
                  f"| {diff:.1e} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
