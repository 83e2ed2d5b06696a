"""Training: a config in, checkpoints and logs out.

``train(config, out_dir)`` trains ``config.model`` with ``config.loss`` on P x K
chunk batches of ``config.data.corpus``. Each epoch (a fixed number of batches)
ends with a validation EER, if validation trials are given, and an atomic
checkpoint (``checkpoints/last.pt``; ``checkpoints/best.pt`` keeps the best
validation EER). ``resume=True`` continues exactly where ``last.pt`` stopped:
the batch stream is a function of (seed, rank, batch number) only, and the
model, loss, optimiser and scheduler states are restored.

Run under ``torchrun --nproc_per_node N`` it trains with DistributedDataParallel:
each rank draws its own deterministic batches, gradients are averaged, and only
rank 0 validates and writes files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from ..inference.checkpoint import load_checkpoint, save_checkpoint
from .config import Config, save_config
from .optim import build_optimizer, lr_factor
from ..checks import parse_device
from ..errors import ConfigError, TrainingError
from ..fileio import atomic_open


@dataclass
class TrainResult:
    out_dir: str
    epochs_done: int
    batches_done: int
    best_eer: float | None
    best_checkpoint: str | None
    last_checkpoint: str
    train_time_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False


class TrainStep(nn.Module):
    """Network and loss as one module, so that DDP averages the gradients of both."""

    def __init__(self, model: nn.Module, loss: nn.Module):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, waveforms: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.model(waveforms)
        return self.loss(embeddings.float(), labels), embeddings


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if distributed.is_distributed() and torch.cuda.is_available():
            return torch.device("cuda", distributed.local_rank())
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return parse_device(name, "training.device")


def build_corpus(config: Config):
    """The training corpus: ``data.corpus`` (one folder or several, pooled), speakers
    with less than ``data.min_speaker_duration_s`` of audio left out."""
    from ..data.corpus import Corpus, nested_speakers
    from ..data.readers import read_corpus

    roots = config.data.corpus if isinstance(config.data.corpus, list) else [config.data.corpus]
    if not any(roots):
        raise ConfigError("data.corpus is required: the folder of the training corpus")
    parts = [read_corpus(root, config.data.format, strict=config.data.strict) for root in roots]
    if config.data.split:
        parts = [part.subset(split_speakers(root, config.data.split)) for root, part in zip(roots, parts)]
    corpus = parts[0] if len(parts) == 1 else Corpus([u for part in parts for u in part], root=roots[0])
    if config.data.num_speakers is not None:
        corpus = corpus.subset(nested_speakers(corpus.speakers, config.data.num_speakers))
    kept = corpus.with_min_duration(config.data.min_speaker_duration_s)
    if len(kept.speakers) < config.data.speakers_per_batch:
        raise ConfigError(
            f"data.speakers_per_batch is {config.data.speakers_per_batch} but only {len(kept.speakers)} "
            f"speakers of {', '.join(roots)} have at least data.min_speaker_duration_s="
            f"{config.data.min_speaker_duration_s} s of audio"
        )
    return kept


def split_speakers(root: str, split: str) -> list[str]:
    """The speakers of ``split`` in the ``splits.json`` of a corpus (built-in corpus layout)."""
    candidates = [Path(root) / "splits.json", Path(root).parent / "splits.json"]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise ConfigError(f"data.split is '{split}' but {root} has no splits.json (nor has its parent folder)")
    splits = json.loads(path.read_text(encoding="utf-8"))
    if split not in splits:
        raise ConfigError(f"data.split '{split}' is not in {path} (it has: {', '.join(sorted(splits))})")
    return list(splits[split])


def build_dataset(config: Config, corpus, start_batch: int = 0):
    from ..data.augment import Augmentation
    from ..data.sampler import ChunkBatches

    augmentation = None
    if config.data.augmentation is not None:
        a = config.data.augmentation
        augmentation = Augmentation(
            noise_dir=a.noise_dir, rir_dir=a.rir_dir, snr_db=tuple(a.snr_db),
            noise_prob=a.noise_prob if a.noise_dir else 0.0, rir_prob=a.rir_prob if a.rir_dir else 0.0,
            band_limit_prob=a.band_limit_prob, eq_tilt_prob=a.eq_tilt_prob,
            eq_tilt_db_per_octave=a.eq_tilt_db_per_octave, gain_db=None if a.gain_db is None else tuple(a.gain_db),
        )
    return ChunkBatches(
        corpus,
        speakers_per_batch=config.data.speakers_per_batch,
        chunks_per_speaker=config.data.chunks_per_speaker,
        chunk_duration_s=config.data.chunk_duration_s,
        seed=config.seed,
        augmentation=augmentation,
        rank=distributed.rank(),
        world_size=distributed.world_size(),
        start_batch=start_batch,
    )


def build_model_and_loss(config: Config, num_speakers: int) -> tuple[nn.Module, nn.Module]:
    from ..losses import build_loss
    from ..models import build_model

    model = build_model(config.model.name, **config.model.params)
    loss = build_loss(config.loss.name, embedding_dim=model.embedding_dim, num_speakers=num_speakers,
                      **config.loss.params)
    if loss.requires_pairs and config.data.chunks_per_speaker < 2:
        raise ConfigError(
            f"loss '{config.loss.name}' learns from pairs of chunks of one speaker: "
            f"set data.chunks_per_speaker >= 2 (it is {config.data.chunks_per_speaker})"
        )
    if config.init_from:
        from ..inference.speaker_model import load_network_weights

        load_network_weights(model, config.init_from)
    return model, loss


RESUME_FIXED_SECTIONS = ("model", "loss", "optimizer", "data", "seed")
"""Config sections a resumed run must share with its checkpoint (the rest may change)."""
RESUME_FREE_KEYS = {"data.num_workers"}
"""...except these: they do not change what is trained (the batch stream ignores workers)."""


def _changed_keys(saved: dict[str, Any], current: dict[str, Any], sections, prefix: str = "") -> list[str]:
    """Dotted names of the values that differ between two config dictionaries, in ``sections``."""
    changed = []
    for key in sections:
        a, b = saved.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict) and key != "params":
            changed += _changed_keys(a, b, sorted(set(a) | set(b)), f"{name}.")
        elif name in RESUME_FREE_KEYS:
            continue
        elif a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and list(a) == list(b)):
            changed.append(name)
    return changed


class _StopRequest:
    """SIGINT/SIGTERM ask for a checkpoint at the end of the current batch, then exit."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        if distributed.is_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def frontend_settings(config: Config):
    """The :class:`~voxmetric.inference.frontend.FrontendSettings` of ``config.frontend``."""
    from ..inference.frontend import FrontendSettings

    return FrontendSettings.from_dict(dataclasses.asdict(config.frontend))


def validate(model: nn.Module, config: Config, device: torch.device, progress: bool = False) -> float | None:
    """EER (%) of the model on the validation trials through the one front-end, or None
    when there are none."""
    if not config.validation.trials:
        return None
    from ..evaluate.pipeline import evaluate_trials
    from ..inference.frontend import Frontend

    frontend = Frontend(model, frontend_settings(config), device)
    result = evaluate_trials(frontend, config.validation.trials, config.validation.root, n_bootstrap=0,
                             progress=progress)
    return result["cosine"]["eer"] * 100


class Trainer:
    """One training run; see :func:`train`."""

    def __init__(self, config: Config, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
                 overwrite: bool = False):
        self.config = config
        self.out = Path(out_dir)
        self.progress = progress and distributed.is_main()
        self.device = resolve_device(config.training.device)
        self.checkpoints = self.out / "checkpoints"
        if not resume:
            self._check_fresh(overwrite)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        state = self._resume_state() if resume else None

        self.corpus = build_corpus(config)
        self.speakers = self.corpus.speakers
        model, loss = build_model_and_loss(config, len(self.speakers))
        self.step = TrainStep(model, loss).to(self.device)
        self.optimizer = build_optimizer(config, self.step.parameters())
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda b: lr_factor(config, b))
        self.batches_done, self.epochs_done, self.best_eer, self.stale_epochs = 0, 0, None, 0
        self.history: list[dict[str, Any]] = []
        self.train_time_s = 0.0
        if state is not None:
            self._load_state(state)
        self.ddp_step = distributed.wrap(self.step, self.device)

    # --- state ----------------------------------------------------------------------------

    def _check_fresh(self, overwrite: bool) -> None:
        """A new run never mixes with an earlier one's checkpoints and logs."""
        earlier = [p for p in (self.checkpoints / "last.pt", self.checkpoints / "best.pt", self.out / "metrics.jsonl")
                   if p.exists()]
        if not earlier:
            return
        if not overwrite:
            raise ConfigError(f"{self.out} already holds a training run ({earlier[0].name}): continue it with "
                              f"--resume, replace it with --overwrite, or choose another --out")
        if distributed.is_main():
            for path in earlier:
                path.unlink()

    def _resume_state(self) -> dict[str, Any] | None:
        last = self.checkpoints / "last.pt"
        if not last.exists():
            raise ConfigError(f"--resume: no checkpoint to resume from at {last}")
        return load_checkpoint(last)

    def _load_state(self, state: dict[str, Any]) -> None:
        if state["speakers"] != self.speakers:
            raise ConfigError("--resume: the corpus' speakers differ from the checkpoint's")
        changed = _changed_keys(state["config"], self.config.to_dict(), RESUME_FIXED_SECTIONS)
        if changed:
            raise ConfigError(f"--resume: the config changed what the checkpoint was trained with "
                              f"({', '.join(changed)}); resume with the same model, loss, optimizer, schedule "
                              f"and data settings (epochs, budgets and validation may change), or start a new run")
        self.step.model.load_state_dict(state["model"])
        self.step.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.batches_done, self.epochs_done = state["batches_done"], state["epochs_done"]
        self.best_eer, self.stale_epochs = state["best_eer"], state["stale_epochs"]
        self.history, self.train_time_s = list(state["history"]), state["train_time_s"]
        torch.set_rng_state(state["torch_rng"])

    def _state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "frontend": frontend_settings(self.config).to_dict(),
            "speakers": self.speakers,
            "model": self.step.model.state_dict(),
            "loss": self.step.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "batches_done": self.batches_done,
            "epochs_done": self.epochs_done,
            "best_eer": self.best_eer,
            "stale_epochs": self.stale_epochs,
            "history": self.history,
            "train_time_s": self.train_time_s,
            "torch_rng": torch.get_rng_state(),
        }

    def _save(self, best: bool = False) -> None:
        if not distributed.is_main():
            return
        state = self._state()
        save_checkpoint(state, self.checkpoints / "last.pt")
        if best:
            save_checkpoint(state, self.checkpoints / "best.pt")

    def _log(self, record: dict[str, Any]) -> None:
        if not distributed.is_main():
            return
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            for key, value in record.items():
                if key not in ("batch", "epoch") and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(key, value, record["batch"])

    def _open_tensorboard(self):
        """TensorBoard event files in ``out/tensorboard`` when the tensorboard package is installed."""
        if not distributed.is_main():
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.out / "tensorboard"))

    # --- loop -----------------------------------------------------------------------------

    def run(self) -> TrainResult:
        from ..data.sampler import make_loader

        if distributed.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.out / "config.yml")
        self._tensorboard = self._open_tensorboard()
        t = self.config.training
        dataset = build_dataset(self.config, self.corpus, start_batch=self.batches_done)
        loader = iter(make_loader(dataset, num_workers=self.config.data.num_workers,
                                  pin_memory=self.device.type == "cuda"))
        interrupted = False
        with _StopRequest() as stop:
            while self.epochs_done < t.epochs and not interrupted:
                interrupted = self._epoch(loader, stop)
                if interrupted:
                    self._save()
                    break
                if self._end_epoch() or self._out_of_time(0.0):
                    break
        if self._tensorboard is not None:
            self._tensorboard.close()
        best = self.checkpoints / "best.pt"
        return TrainResult(
            str(self.out), self.epochs_done, self.batches_done, self.best_eer,
            str(best) if best.exists() else None, str(self.checkpoints / "last.pt"),
            self.train_time_s, self.history, interrupted,
        )

    def _epoch(self, loader, stop: _StopRequest) -> bool:
        """Train up to the end of the current epoch; True if a stop was requested."""
        t = self.config.training
        first = max(0, self.batches_done - self.epochs_done * t.batches_per_epoch)
        bar = tqdm(total=t.batches_per_epoch, initial=first, disable=not self.progress, unit="batch",
                   desc=f"epoch {self.epochs_done + 1}/{t.epochs}", dynamic_ncols=True, leave=False)
        self.step.train()
        running, started = [], time.perf_counter()
        for _ in range(first, t.batches_per_epoch):
            waveforms, labels = next(loader)
            loss = self._train_batch(waveforms.to(self.device, non_blocking=True),
                                     labels.to(self.device, non_blocking=True))
            self.batches_done += 1
            running.append(loss)
            elapsed = time.perf_counter() - started
            rate = len(running) * len(labels) * distributed.world_size() / max(elapsed, 1e-9)
            bar.set_postfix(loss=f"{np.mean(running[-20:]):.3f}", chunks_per_s=f"{rate:.0f}")
            bar.update()
            if self.batches_done % t.log_every_batches == 0:
                self._log({"batch": self.batches_done, "loss": float(np.mean(running[-t.log_every_batches:])),
                           "lr": self.scheduler.get_last_lr()[0], "chunks_per_s": rate})
            out_of_time, stop_now = distributed.any_rank((self._out_of_time(elapsed), stop.requested), self.device)
            if out_of_time:
                break
            if stop_now:
                bar.close()
                self.train_time_s += time.perf_counter() - started
                return True
        bar.close()
        self.train_time_s += time.perf_counter() - started
        self._epoch_loss = float(np.mean(running)) if running else float("nan")
        return False

    def _out_of_time(self, epoch_elapsed_s: float) -> bool:
        limit = self.config.training.max_time_s
        return limit is not None and self.train_time_s + epoch_elapsed_s >= limit

    def _train_batch(self, waveforms: torch.Tensor, labels: torch.Tensor) -> float:
        use_amp = self.config.training.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, _ = self.ddp_step(waveforms, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.training.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(self.step.parameters(), self.config.training.grad_clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingError(
                f"training loss became {value} at batch {self.batches_done + 1}: lower optimizer.lr "
                f"or set training.grad_clip_norm"
            )
        return value

    def _end_epoch(self) -> bool:
        """Validate, checkpoint, log; True when early stopping says stop."""
        self.epochs_done += 1
        eer = validate(self.step.model, self.config, self.device, self.progress) if distributed.is_main() else None
        eer = distributed.broadcast_float(eer, self.device)
        improved = eer is not None and (self.best_eer is None or eer < self.best_eer)
        if improved:
            self.best_eer, self.stale_epochs = eer, 0
        elif eer is not None:
            self.stale_epochs += 1
        record = {"epoch": self.epochs_done, "batch": self.batches_done, "train_loss": self._epoch_loss,
                  "val_eer": eer, "train_time_s": round(self.train_time_s, 2)}
        self.history.append(record)
        self._log(record)
        self._save(best=improved)
        if self.progress:
            shown = f", validation EER {eer:.2f}%" if eer is not None else ""
            tqdm.write(f"epoch {self.epochs_done}: loss {self._epoch_loss:.4f}{shown}")
        patience = self.config.training.early_stop_epochs
        return bool(patience and self.stale_epochs >= patience)


def train(config: Config, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
          overwrite: bool = False) -> TrainResult:
    """Train the experiment described by ``config``, writing into ``out_dir``.

    Writes ``config.yml`` (the merged config), ``metrics.jsonl`` (one record per
    log step and per epoch), ``checkpoints/last.pt`` and ``checkpoints/best.pt``.
    """
    with distributed.session():
        result = Trainer(config, out_dir, resume=resume, progress=progress, overwrite=overwrite).run()
    if distributed.is_main():
        with atomic_open(Path(out_dir) / "train_result.json") as f:
            json.dump(result.__dict__, f, indent=2)
    return result
