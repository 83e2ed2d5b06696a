"""Peak memory (and time) of embedding one long file through a bundled model at its default settings.

    python benchmarks/embed_memory.py                       # 1-hour file, both bundled models
    python benchmarks/embed_memory.py --minutes 10 --before /tmp/old-checkout   # side by side with another tree
    python benchmarks/embed_memory.py --check-minutes 5     # + ECAPA's segmented vs one-pass cosine

The long file is ``../shared/data/long_60s.flac`` (72.5 s of speech) tiled to ``--minutes``
and written once as 16 kHz FLAC under the system temporary folder. Every case runs in its
own process (``python -c`` of this file's ``--child``), so that its peak resident memory
(``VmHWM``: torch's allocations included) is its own: ``load_model(name)`` then
``model.embed(path)`` (read, quality, VAD, level, network: the default front-end). With
``--before DIR`` each case runs a second time with ``DIR`` first on ``PYTHONPATH`` (another
checkout of voxmetric), interleaved with the current tree's, and the table gives both.
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
DEFAULT_AUDIO = REPO_ROOT.parent / "shared" / "data" / "long_60s.flac"
MODELS = ("sinctdnn-aam", "ecapa-aam")


def _status_mb(key: str) -> float:
    """``VmHWM`` (peak resident memory of this process image) or ``VmRSS`` from /proc, MB.

    Not ``getrusage``'s max RSS: that survives ``exec`` and would report the parent's size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict) -> dict:
    import torch

    import voxmetric
    from voxmetric.inference.speaker_model import load_model

    torch.set_num_threads(spec["threads"])
    model = load_model(spec["model"])
    base_mb = _status_mb("VmHWM")
    start = time.perf_counter()
    embedding = model.embed(spec["path"])
    seconds = time.perf_counter() - start
    peak_mb = _status_mb("VmHWM")
    return {"seconds": seconds, "base_mb": base_mb, "peak_mb": peak_mb, "embedding": embedding.tolist(),
            "package": os.path.dirname(voxmetric.__file__)}


def run_child(spec: dict, pythonpath: str) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                            env=env, cwd=REPO_ROOT)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["killed"])[-1] + f" (exit {result.returncode})"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def long_file(audio_path: Path, minutes: float) -> Path:
    import numpy as np

    from voxmetric import audio

    out = Path(tempfile.gettempdir()) / f"voxmetric-bench-{audio_path.stem}-{minutes:g}min.flac"
    if not out.exists():
        waveform = audio.read(audio_path)
        audio.write(out, np.resize(waveform, int(round(minutes * 60 * audio.SAMPLE_RATE_HZ))))
    return out


def cosine(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_segments(audio_path: Path, minutes: float) -> None:
    """ECAPA: the segmented whole-file embedding (inputs over MAX_WHOLE_S) vs one pass."""
    import numpy as np

    from voxmetric.evaluate.extract import MAX_WHOLE_S, embed_waveform
    from voxmetric.inference.speaker_model import load_model

    model = load_model("ecapa-aam")
    for seconds in (90, 150, minutes * 60):
        waveform = model.waveform(str(long_file(audio_path, seconds / 60)))
        segmented = embed_waveform(model.network, waveform, window_s=None)
        one_pass = embed_waveform(model.network, waveform, window_s=None, max_whole_s=None)
        print(f"ecapa-aam, {waveform.size / 16000:.0f} s after VAD: segments of <= {MAX_WHOLE_S:g} s vs one pass: "
              f"cosine {cosine(segmented, one_pass):.5f}, max abs diff {np.abs(segmented - one_pass).max():.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", help="another voxmetric checkout to run side by side")
    parser.add_argument("--check-minutes", type=float, help="also ECAPA's segmented vs one-pass cosine up to this")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    path = long_file(args.audio, args.minutes)
    print(f"file: {args.audio} tiled to {args.minutes:g} min ({path}); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start; {args.threads} thread(s)")
    print("| model | tree | peak RSS MB | RSS after load_model MB | embed s | cosine to current |")
    print("|---|---|---|---|---|---|")
    trees = [("current", str(REPO_ROOT))] + ([("before", args.before)] if args.before else [])
    for name in args.models:
        results = {}
        for label, tree in trees:
            spec = {"model": name, "path": str(path), "threads": args.threads}
            out = results[label] = run_child(spec, tree)
            if "error" in out:
                print(f"| {name} | {label} | failed: {out['error']} | | | |", flush=True)
                continue
            same = cosine(out["embedding"], results["current"]["embedding"]) if "embedding" in results["current"] else ""
            print(f"| {name} | {label} | {out['peak_mb']:.0f} | {out['base_mb']:.0f} | {out['seconds']:.1f} | "
                  f"{same if same == '' else f'{same:.6f}'} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    if args.check_minutes:
        check_segments(args.audio, args.check_minutes)


if __name__ == "__main__":
    main()
