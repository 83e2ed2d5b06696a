"""Training throughput in chunks/s: the loader alone, forward+backward alone, the full step.

    .venv/bin/python benchmarks/train_throughput.py                      # CPU, ~2-3 minutes
    .venv/bin/python benchmarks/train_throughput.py --device cuda --model-batches 20 \\
        --step-batches 50 --workers 4 8                                  # a GPU

The seed's batches: P = ``--speakers-per-batch`` (128) speakers x K = 1 chunk of
``--chunk-s`` (3.0) seconds, read by :class:`~voxmetric.data.sampler.ChunkBatches`
(random chunks decoded by seeking, not whole files) through
:func:`~voxmetric.data.sampler.make_loader` from ``--corpus`` (default
``../shared/data/librispeech-1utt``, 251 speakers, speaker folders); no augmentation.
The model is the seed-size SincTDNN (``--model-params`` JSON to change it) with the
AAM loss and SGD, as the trainer runs them.

Three measurements, each after ``--warmup-batches`` untimed batches:

- **loader**: batches from the DataLoader and nothing else, for each ``--workers`` count;
- **forward+backward**: forward, AAM loss, backward and SGD step on a synthetic batch
  already on the device (no data at all);
- **full step**: the loader (the largest ``--workers``) feeding the step, synchronised
  every batch as the trainer's ``float(loss)`` does; "waiting on data" is the share of
  the wall time spent in ``next(loader)`` plus the host-to-device copy, i.e. the time
  the device has nothing to do.

On CUDA: ``cudnn.benchmark`` on, bf16 autocast (``--amp none`` for float32 with TF32
matmuls), pinned host memory. ``channels_last`` is not used: it is a layout for 4-D
(image) tensors and every convolution here is 1-D.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from voxmetric.data.readers import read_corpus
from voxmetric.data.sampler import ChunkBatches, make_loader
from voxmetric.losses import build_loss
from voxmetric.models import build_model

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "data" / "librispeech-1utt"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Step:
    """Forward, loss, backward and optimiser step, as :class:`voxmetric.train.Trainer` runs them."""

    def __init__(self, args: argparse.Namespace, num_speakers: int, device: torch.device):
        torch.manual_seed(0)
        self.model = build_model("sinctdnn", **args.model_params).to(device).train()
        self.loss = build_loss("aam", self.model.embedding_dim, num_speakers).to(device).train()
        parameters = list(self.model.parameters()) + list(self.loss.parameters())
        self.optimizer = torch.optim.SGD(parameters, lr=0.01)
        self.device = device
        self.amp = device.type == "cuda" and args.amp == "bf16"

    def __call__(self, waveforms: torch.Tensor, labels: torch.Tensor) -> float:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss = self.loss(self.model(waveforms).float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())  # synchronises, as the trainer does every batch


def loader_rate(dataset: ChunkBatches, workers: int, batches: int, warmup: int, pin: bool) -> dict:
    loader = iter(make_loader(dataset, num_workers=workers, pin_memory=pin))
    start = time.perf_counter()
    for _ in range(warmup):
        next(loader)
    first_s = time.perf_counter() - start
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        waveforms, _ = next(loader)
        times.append(time.perf_counter() - start)
    del loader
    chunks = waveforms.shape[0]
    return {"chunks_per_s": chunks * len(times) / sum(times), "startup_s": first_s,
            "median_batch_s": statistics.median(times)}


def model_rate(step: Step, args: argparse.Namespace, num_speakers: int, device: torch.device) -> dict:
    batch = args.speakers_per_batch * args.chunks_per_speaker
    samples = round(args.chunk_s * 16000)
    generator = torch.Generator().manual_seed(0)
    waveforms = (0.1 * torch.randn(batch, samples, generator=generator)).to(device)
    labels = torch.randint(0, num_speakers, (batch,), generator=generator).to(device)
    for _ in range(args.warmup_batches):
        step(waveforms, labels)
    times = []
    for _ in range(args.model_batches):
        sync(device)
        start = time.perf_counter()
        step(waveforms, labels)
        sync(device)
        times.append(time.perf_counter() - start)
    return {"chunks_per_s": batch / min(times), "chunks_per_s_median": batch / statistics.median(times),
            "min_batch_s": min(times), "median_batch_s": statistics.median(times)}


def full_step_rate(step: Step, dataset: ChunkBatches, args: argparse.Namespace, device: torch.device) -> dict:
    workers = max(args.workers)
    loader = iter(make_loader(dataset, num_workers=workers, pin_memory=device.type == "cuda"))
    for _ in range(args.warmup_batches):
        waveforms, labels = next(loader)
        step(waveforms.to(device), labels.to(device))
    waiting_s, chunks = 0.0, 0
    sync(device)
    start = time.perf_counter()
    for _ in range(args.step_batches):
        before = time.perf_counter()
        waveforms, labels = next(loader)
        waveforms = waveforms.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        sync(device)
        waiting_s += time.perf_counter() - before
        step(waveforms, labels)
        chunks += labels.shape[0]
    total_s = time.perf_counter() - start
    return {"chunks_per_s": chunks / total_s, "waiting_fraction": waiting_s / total_s, "workers": workers,
            "batch_s": total_s / args.step_batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus folder (default: %(default)s)")
    parser.add_argument("--format", default="folders", help="corpus layout (voxmetric.data.readers.read_corpus)")
    parser.add_argument("--speakers-per-batch", type=int, default=128, help="P")
    parser.add_argument("--chunks-per-speaker", type=int, default=1, help="K")
    parser.add_argument("--chunk-s", type=float, default=3.0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the main process (default: all)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="DataLoader worker counts for the loader rows; the largest feeds the full step "
                             "(default: 0 1 2 on CPU, 0 4 8 on CUDA)")
    parser.add_argument("--loader-batches", type=int, default=10)
    parser.add_argument("--model-batches", type=int, default=2)
    parser.add_argument("--step-batches", type=int, default=2)
    parser.add_argument("--warmup-batches", type=int, default=1)
    parser.add_argument("--amp", choices=["bf16", "none"], default="bf16", help="autocast on CUDA")
    parser.add_argument("--model-params", type=json.loads, default={}, help="SincTDNN parameters as JSON")
    parser.add_argument("--skip", nargs="*", default=[], choices=["loader", "model", "step"])
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: this torch build sees no CUDA device")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.workers is None:
        args.workers = [0, 4, 8] if device.type == "cuda" else [0, 1, 2]
    if not args.corpus.is_dir():
        raise SystemExit(f"corpus not found: {args.corpus} (give one with --corpus)")
    corpus = read_corpus(args.corpus, args.format, progress=False)
    speakers = len(corpus.speakers)
    if args.speakers_per_batch > speakers:
        print(f"note: {speakers} speakers in the corpus; P lowered from {args.speakers_per_batch} to {speakers}")
        args.speakers_per_batch = speakers
    dataset = ChunkBatches(corpus, args.speakers_per_batch, args.chunks_per_speaker, args.chunk_s)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(f"device: {name}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"batches of P={args.speakers_per_batch} x K={args.chunks_per_speaker} chunks of {args.chunk_s} s "
          f"from {args.corpus} ({speakers} speakers); model sinctdnn {json.dumps(args.model_params)} + AAM, SGD; "
          f"amp: {args.amp if device.type == 'cuda' else 'none (CPU)'}")
    print("| measurement | chunks/s | detail |")
    print("|---|---|---|")
    if "loader" not in args.skip:
        for workers in args.workers:
            out = loader_rate(dataset, workers, args.loader_batches, args.warmup_batches, device.type == "cuda")
            print(f"| loader, {workers} workers | {out['chunks_per_s']:.0f} | median {out['median_batch_s']:.3f} s/batch "
                  f"over {args.loader_batches} batches; first {args.warmup_batches} took {out['startup_s']:.2f} s |",
                  flush=True)
    step = Step(args, dataset.num_speakers, device)
    if "model" not in args.skip:
        out = model_rate(step, args, dataset.num_speakers, device)
        print(f"| forward+backward (synthetic) | {out['chunks_per_s']:.1f} | best {out['min_batch_s']:.2f} s/batch, "
              f"median {out['median_batch_s']:.2f} s over {args.model_batches} batches |", flush=True)
    if "step" not in args.skip:
        out = full_step_rate(step, dataset, args, device)
        print(f"| full step, {out['workers']} workers | {out['chunks_per_s']:.1f} | {out['batch_s']:.2f} s/batch over "
              f"{args.step_batches} batches; waiting on data {100 * out['waiting_fraction']:.1f}% |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
