"""Fuzzed audio through ``embed``: an embedding or a one-line error naming the file, nothing else.

    .venv/bin/python benchmarks/fuzz_audio.py                    # 3000 mutants (~10 min on 2 cores)
    .venv/bin/python benchmarks/fuzz_audio.py --count 300 --seed 1

Valid WAV (16-bit and float), FLAC and OGG files of a synthetic voice are mutated by
a seeded fuzzer (:func:`mutants`): bit flips, truncation at every header boundary,
lying chunk sizes, absurd sample rates, channel counts and sample formats, huge
declared lengths. Every mutant is embedded by ``load_model(tiny).embed(path)`` in a
worker process; the parent enforces a per-file time bound (``--timeout``, the worker
is killed and restarted on a hang) and a memory bound (``--max-rss-mb``, polled),
and counts files, embedded, refused (a :class:`VoxmetricError` naming the file, one
line), failures (anything else: a traceback, a hang, a memory blow-up), worst time
and worst resident memory. Exit status 1 if any file failed.

The test suite runs the same fuzzer with a small count (``tests/audio/test_fuzz.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEED_FILES = ("pcm16.wav", "float.wav", "stereo44k.wav", "voice.flac", "voice.ogg")


def voice(seconds: float = 1.5, sample_rate_hz: int = 16000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """Harmonics with a syllable-rate envelope: what the VAD calls speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    x = sum(0.6 ** k * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(6))
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) * ((t > 0.15) & (t < seconds - 0.15))
    x = x + rng.normal(0, 0.003, t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def write_seeds(directory: str | os.PathLike) -> list[Path]:
    """The valid files the fuzzer mutates."""
    import soundfile as sf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    x = voice()
    sf.write(directory / "pcm16.wav", x, 16000, subtype="PCM_16")
    sf.write(directory / "float.wav", x, 16000, subtype="FLOAT")
    x44 = voice(sample_rate_hz=44100)
    sf.write(directory / "stereo44k.wav", np.stack([x44, 0.5 * x44], 1), 44100, subtype="PCM_16")
    sf.write(directory / "voice.flac", x, 16000, subtype="PCM_16")
    sf.write(directory / "voice.ogg", x, 16000, format="OGG", subtype="VORBIS")
    return [directory / name for name in SEED_FILES]


# --- header layout ------------------------------------------------------------------------


def wav_fields(data: bytes) -> dict[str, tuple[int, int]]:
    """``name -> (offset, size)`` of the RIFF/WAVE header fields (fmt and data chunks)."""
    fields = {"riff_size": (4, 4)}
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4], struct.unpack("<I", data[offset + 4:offset + 8])[0]
        if chunk == b"fmt ":
            fields.update(fmt_size=(offset + 4, 4), format_tag=(offset + 8, 2), channels=(offset + 10, 2),
                          sample_rate=(offset + 12, 4), byte_rate=(offset + 16, 4), block_align=(offset + 20, 2),
                          bits=(offset + 22, 2))
        elif chunk == b"data":
            fields["data_size"] = (offset + 4, 4)
            break
        else:
            fields[f"{chunk.decode('latin-1')}_size"] = (offset + 4, 4)
        offset += 8 + size + (size & 1)
    return fields


def boundaries(data: bytes, kind: str) -> list[int]:
    """Offsets where a header field or chunk starts or ends: truncation points."""
    points = {0, 1, 4, 8, 12}
    if kind == "wav":
        for offset, size in wav_fields(data).values():
            points |= {offset, offset + size}
        data_size = wav_fields(data).get("data_size")
        if data_size:
            points |= {data_size[0] + 4 + 1, data_size[0] + 4 + 2}
    elif kind == "flac":
        points |= {4, 8, 10, 12, 15, 18, 21, 26, 34, 42}
        offset = 4
        while offset + 4 <= len(data):
            last, size = data[offset] & 0x80, int.from_bytes(data[offset + 1:offset + 4], "big")
            points |= {offset, offset + 4, offset + 4 + size}
            offset += 4 + size
            if last:
                points |= {offset + 1, offset + 2, offset + 6}
                break
    elif kind == "ogg":
        offset = 0
        while True:
            offset = data.find(b"OggS", offset)
            if offset < 0:
                break
            segments = data[offset + 26] if offset + 26 < len(data) else 0
            points |= {offset, offset + 5, offset + 6, offset + 14, offset + 22, offset + 26, offset + 27,
                       offset + 27 + segments}
            offset += 4
        vorbis = data.find(b"\x01vorbis")
        if vorbis >= 0:
            points |= {vorbis, vorbis + 7, vorbis + 11, vorbis + 12, vorbis + 16, vorbis + 30}
    return sorted(p for p in points if 0 < p < len(data))


ABSURD_U32 = (0, 1, 2, 100, 3999, 384001, 1_000_000, 0x7FFFFFFF, 0xFFFFFFFF)
ABSURD_U16 = (0, 1, 3, 33, 255, 1000, 0x7FFF, 0xFFFF)


def _put(data: bytearray, offset: int, size: int, value: int) -> None:
    if offset + size <= len(data):
        data[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _flac_streaminfo(data: bytearray, rng, what: str) -> None:
    """Rewrite the STREAMINFO sample rate (20 bits), channels (3), bits (5) or total samples (36)."""
    if len(data) < 26 or data[:4] != b"fLaC":
        return
    packed = int.from_bytes(data[18:26], "big")
    if what == "rate":
        value, shift, bits = int(rng.choice([0, 1, 100, 3999, 384001, (1 << 20) - 1])), 44, 20
    elif what == "channels":
        value, shift, bits = int(rng.integers(0, 8)), 41, 3
    elif what == "bits":
        value, shift, bits = int(rng.integers(0, 32)), 36, 5
    else:
        value, shift, bits = int(rng.choice([(1 << 36) - 1, 1 << 35, 10 ** 10, 16000 * 3600 * 5])), 0, 36
    mask = ((1 << bits) - 1) << shift
    packed = (packed & ~mask) | ((value << shift) & mask)
    data[18:26] = packed.to_bytes(8, "big")


def _ogg_ident(data: bytearray, rng, what: str) -> None:
    """Rewrite the Vorbis identification header's channels or sample rate (page CRC left stale,
    as a corrupting disk would)."""
    at = data.find(b"\x01vorbis")
    if at < 0:
        return
    if what == "channels":
        data[at + 11] = int(rng.choice([0, 33, 255]))
    else:
        _put(data, at + 12, 4, int(rng.choice(ABSURD_U32)))


def mutate(data: bytes, kind: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random mutation of a valid file: ``(bytes, description)``."""
    out = bytearray(data)
    choice = rng.integers(0, 8)
    if choice == 0:  # bit flips, half of the time inside the first 64 bytes (the header)
        n = int(rng.integers(1, 9))
        span = 64 if rng.random() < 0.5 else len(out)
        for position in rng.integers(0, min(span, len(out)) * 8, size=n):
            out[position // 8] ^= 1 << (position % 8)
        return bytes(out), f"{n} bit flips in the first {span} bytes"
    if choice == 1:  # truncation at a header boundary (or near one)
        point = int(rng.choice(boundaries(data, kind)))
        return bytes(out[:point]), f"truncated at byte {point}"
    if choice == 2:  # truncation anywhere
        point = int(rng.integers(0, len(out)))
        return bytes(out[:point]), f"truncated at byte {point}"
    if choice == 3:  # random bytes over a stretch
        start, length = int(rng.integers(0, len(out))), int(rng.integers(1, 65))
        out[start:start + length] = rng.integers(0, 256, size=len(out[start:start + length]), dtype=np.uint8).tobytes()
        return bytes(out), f"{length} random bytes at {start}"
    if kind == "wav":
        fields = wav_fields(data)
        name = str(rng.choice(sorted(fields)))
        offset, size = fields[name]
        value = int(rng.choice(ABSURD_U32 if size == 4 else ABSURD_U16))
        if name in ("riff_size", "data_size", "fmt_size") and rng.random() < 0.3:
            current = int.from_bytes(data[offset:offset + size], "little")
            value = current + int(rng.integers(-9, 10))
        _put(out, offset, size, value)
        if name == "data_size" and rng.random() < 0.3:  # a lying length with data beyond it
            out += rng.integers(0, 256, size=int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
        return bytes(out), f"{name} := {value}"
    if kind == "flac":
        what = str(rng.choice(["rate", "channels", "bits", "total", "total"]))
        _flac_streaminfo(out, rng, what)
        return bytes(out), f"STREAMINFO {what} changed"
    what = str(rng.choice(["channels", "rate"]))
    _ogg_ident(out, rng, what)
    return bytes(out), f"vorbis {what} changed"


def mutants(seeds: list[Path], count: int, out_dir: str | os.PathLike, seed: int = 0) -> list[tuple[Path, str]]:
    """Write ``count`` mutants of the seed files into ``out_dir``: ``[(path, description)]``."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    originals = [(path, path.read_bytes(), path.suffix[1:]) for path in seeds]
    written = []
    for i in range(count):
        path, data, kind = originals[i % len(originals)]
        mutated, description = mutate(data, kind, rng)
        target = out_dir / f"{i:05d}-{path.stem}{path.suffix}"
        target.write_bytes(mutated)
        written.append((target, f"{path.name}: {description}"))
    return written


def check_one(model, path: str) -> tuple[str, str]:
    """``("embedded", "")``, ``("refused", message)`` or ``("failed", what went wrong)``."""
    from voxmetric.errors import VoxmetricError

    try:
        embedding = model.embed(path)
    except VoxmetricError as error:
        message = str(error)
        if "\n" in message or path not in message:
            return "failed", f"error message not one line naming the file: {message!r}"
        return "refused", message
    except Exception as error:  # noqa: BLE001 - that is what the fuzzer looks for
        import traceback

        return "failed", "".join(traceback.format_exception(error))[-2000:]
    if embedding.shape != (model.embedding_dim,) or not np.isfinite(embedding).all():
        return "failed", f"bad embedding {embedding!r}"
    return "embedded", ""


# --- worker process with a watchdog ---------------------------------------------------------


def _worker(model_path: str) -> None:
    """Read paths on stdin, answer one JSON line each: status, message, seconds, max RSS."""
    import resource

    import torch

    from voxmetric.inference.speaker_model import load_model

    torch.set_num_threads(1)
    model = load_model(model_path)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        path = line.strip()
        started = time.perf_counter()
        status, message = check_one(model, path)
        seconds = time.perf_counter() - started
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"status": status, "message": message, "seconds": seconds, "rss_mb": rss_mb}), flush=True)


class Watchdog:
    """A worker process that embeds one file at a time, killed and restarted when a file
    takes longer than ``timeout_s`` or its resident memory exceeds ``max_rss_mb``."""

    def __init__(self, model_path: str, timeout_s: float, max_rss_mb: float):
        self.model_path, self.timeout_s, self.max_rss_mb = model_path, timeout_s, max_rss_mb
        self.process = None

    def _start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", self.model_path],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                        bufsize=0)
        self._buffer = ""
        deadline = time.perf_counter() + 120
        while "\n" not in self._buffer and time.perf_counter() < deadline and self.process.poll() is None:
            self._read(0.1)
        line, self._buffer = self._buffer.split("\n", 1)
        assert json.loads(line).get("ready")

    def _read(self, wait_s: float) -> None:
        import select

        fd = self.process.stdout.fileno()
        if select.select([fd], [], [], wait_s)[0]:
            self._buffer += os.read(fd, 1 << 16).decode()

    def _rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.process.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def check(self, path: str) -> dict:
        if self.process is None or self.process.poll() is not None:
            self._start()
        started = time.perf_counter()
        self.process.stdin.write(path + "\n")
        self.process.stdin.flush()
        peak = 0.0
        while True:
            self._read(0.005)
            if "\n" in self._buffer:
                line, self._buffer = self._buffer.split("\n", 1)
                result = json.loads(line)
                result["rss_mb"] = max(result["rss_mb"], peak)
                return result
            elapsed = time.perf_counter() - started
            peak = max(peak, self._rss_mb())
            problem = None
            if self.process.poll() is not None:
                problem = f"worker died (exit status {self.process.returncode})"
            elif elapsed > self.timeout_s:
                problem = f"hang: no answer after {self.timeout_s:.0f} s"
            elif peak > self.max_rss_mb:
                problem = f"memory: resident {peak:.0f} MB > {self.max_rss_mb:.0f} MB"
            if problem:
                self.close()
                return {"status": "failed", "message": problem, "seconds": elapsed, "rss_mb": peak}

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def make_tiny_model(directory: Path) -> Path:
    """A tiny untrained SincTDNN exported as a weights file (fast to run)."""
    import torch

    from voxmetric.inference.checkpoint import save_checkpoint
    from voxmetric.inference.export import export_pretrained
    from voxmetric.models import build_model

    model = {"name": "sinctdnn", "params": {"sinc_filters": 16, "conv_channels": 16, "tdnn_channels": 32,
                                            "tdnn_stats_channels": 64, "embedding_dim": 16}}
    torch.manual_seed(0)
    network = build_model(model["name"], **model["params"])
    checkpoint = directory / "tiny.pt"
    save_checkpoint({"config": {"model": model}, "model": network.state_dict(), "speakers": ["a", "b"]}, checkpoint)
    out = directory / "tiny.safetensors"
    export_pretrained(checkpoint, out, calibration={"scale": 10.0, "offset": -5.0}, threshold=0.5,
                      embedding_settings={"window_s": 1.0, "step_s": 0.5, "rms_dbfs": None},
                      description="tiny untrained fuzzing model")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="number of mutants (default 3000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per file before it counts as a hang")
    parser.add_argument("--max-rss-mb", type=float, default=2000.0, help="resident memory bound of the worker")
    parser.add_argument("--model", help="model to embed with (default: a tiny untrained one)")
    parser.add_argument("--keep", metavar="DIR", help="write the mutants here and keep them")
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(make_tiny_model(tmp))
        files = mutants(write_seeds(tmp / "seeds"), args.count, Path(args.keep or tmp / "mutants"), seed=args.seed)
        watchdog = Watchdog(model, args.timeout, args.max_rss_mb)
        counts = {"embedded": 0, "refused": 0, "failed": 0}
        worst_time, worst_rss, failures = (0.0, ""), (0.0, ""), []
        started = time.perf_counter()
        try:
            for path, description in files:
                result = watchdog.check(str(path))
                counts[result["status"]] += 1
                worst_time = max(worst_time, (result["seconds"], f"{path.name} ({description})"))
                worst_rss = max(worst_rss, (result["rss_mb"], f"{path.name} ({description})"))
                if result["status"] == "failed":
                    failures.append(f"{path.name} ({description}): {result['message']}")
        finally:
            watchdog.close()
    print(f"files {len(files)}, embedded {counts['embedded']}, refused {counts['refused']}, "
          f"failed {counts['failed']}")
    print(f"worst time {worst_time[0]:.2f} s: {worst_time[1]}")
    print(f"worst memory (worker max RSS) {worst_rss[0]:.0f} MB: {worst_rss[1]}")
    print(f"total {time.perf_counter() - started:.0f} s")
    for failure in failures[:20]:
        print("FAILED", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
