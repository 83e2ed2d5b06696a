"""Training: a config in, checkpoints and logs out.

``train(config, out_dir)`` trains ``config.model`` with ``config.loss`` on P x K
chunk batches of ``config.data.corpus``. Each epoch (a fixed number of batches)
ends with a validation EER, if validation trials are given, and an atomic
checkpoint (``checkpoints/last.pt``; ``checkpoints/best.pt`` keeps the best
validation EER). ``resume=True`` continues exactly where ``last.pt`` stopped:
the batch stream is a function of (seed, rank, batch number) only, and the
model, loss, optimiser and scheduler states are restored.

Fine-tuning (:mod:`.finetune`): the network can be frozen for the first batches while
the new loss head learns (``training.freeze_network_batches``), then learn at a lower
rate (``optimizer.network_lr_scale``); the starting model is validated as epoch 0
(``validation.at_start``) and is the first ``best.pt``.

Faults lose nothing: ``last.pt`` is also written within epochs (every
``training.checkpoint_every_batches`` batches or ``checkpoint_every_s`` seconds) and
the checkpoint it replaces is kept as ``last.prev.pt``; a checkpoint that cannot be
written (disk full) is an error naming it, the previous one intact; a corrupt
``last.pt`` at ``--resume`` is an error naming the readable ``last.prev.pt``; a batch
with a NaN or infinite loss or gradient is skipped (``skipped_nonfinite`` in
``metrics.jsonl``) and ``training.max_nonfinite_steps`` of them in a row stop the run;
SIGINT / SIGTERM save a checkpoint and stop (the command line then exits with 128 +
the signal number: 130, 143). On ``--resume``, ``metrics.jsonl`` is cut back to the
checkpoint so that replayed batches are not logged twice.

Run under ``torchrun --nproc_per_node N`` it trains with DistributedDataParallel:
each rank draws its own deterministic batches, gradients are averaged, and only
rank 0 validates and writes files.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import distributed
from ..inference.checkpoint import save_checkpoint
from .config import Config, save_config
from .finetune import (NetworkFreeze, check_imprintable, imprint_head, imprintable, no_improvement_note,
                       start_record, validates_at_start)
from .frontend_select import after_training
from .optim import build_optimizer, build_scheduler
from .run_state import _keep_previous, check_fresh, cut_log, resume_changes, resume_state, _StopRequest
from .setup import (TrainStep, build_corpus, check_inputs, warn_validation_leak, build_dataset, build_model_and_loss, build_teacher,  # noqa: F401
                    class_labels, describe_run, frontend_settings, resolve_device, validate)
from ..errors import ConfigError, TrainingError, VoxmetricError, WriteError
from ..fileio import atomic_open, check_writable_folder, progress_bar


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
    stop_signal: int | None = None  # the signal that interrupted the run (SIGINT 2, SIGTERM 15)
    skipped_nonfinite: int = 0  # batches skipped for a NaN or infinite loss or gradient
    already_finished: str | None = None  # --resume of a finished run: why nothing was trained


class Trainer:
    """One training run; see :func:`train`."""

    def __init__(self, config: Config, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
                 overwrite: bool = False):
        self.config = config
        self.out = Path(out_dir)
        self.progress = progress and distributed.is_main()
        self.device = resolve_device(config.training.device)
        self.checkpoints = self.out / "checkpoints"
        if distributed.is_main():
            check_writable_folder(self.out)  # a file in the way, no permission: before the corpus is read
        if not resume:
            check_fresh(self.out, overwrite)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        state = resume_state(self.checkpoints) if resume else None
        # Validation trials and augmentation folders: before the corpus scan and any batch.
        validation_paths = check_inputs(config)

        self.corpus = build_corpus(config)
        if distributed.is_main():
            warn_validation_leak(validation_paths, self.corpus)
        self.speakers = class_labels(config, self.corpus)
        model, loss = build_model_and_loss(config, len(self.speakers))
        self.step = TrainStep(model, loss, build_teacher(config), config.distill.weight, config.distill.label_loss,
                              config.distill.kind, config.distill.temperature).to(self.device)
        self.optimizer = build_optimizer(config, model, loss)
        self.scheduler = build_scheduler(config, self.optimizer)
        self.freeze = NetworkFreeze(model, loss, config.training.freeze_network_batches, config.loss.name)
        if config.training.imprint_head_chunks:
            check_imprintable(loss, config.loss.name)
        self.batches_done, self.epochs_done, self.best_eer, self.stale_epochs = 0, 0, None, 0
        self.history: list[dict[str, Any]] = []
        self.train_time_s = 0.0
        self.skipped_nonfinite, self.nonfinite_in_row = 0, 0
        self.epoch_losses: list[float] = []  # finite losses of the current epoch's batches so far
        self.resumed = state is not None
        if state is not None:
            self._load_state(state)
        self.freeze.apply(self.batches_done)  # before DDP wraps: it syncs what requires gradients
        self.ddp_step = distributed.wrap(self.step, self.device)

    # --- state ----------------------------------------------------------------------------

    def _load_state(self, state: dict[str, Any]) -> None:
        if state["speakers"] != self.speakers:
            raise ConfigError("--resume: the corpus' speakers differ from the checkpoint's")
        changed = resume_changes(state["config"], self.config.to_dict())
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
        self.skipped_nonfinite = state.get("skipped_nonfinite", 0)
        self.nonfinite_in_row = state.get("nonfinite_in_row", 0)
        self.epoch_losses = list(state.get("epoch_losses", []))
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
            "skipped_nonfinite": self.skipped_nonfinite,
            "nonfinite_in_row": self.nonfinite_in_row,
            "epoch_losses": list(self.epoch_losses),
        }

    def _save(self, best: bool = False) -> None:
        """``last.pt`` (the one it replaces kept as ``last.prev.pt``) and, if ``best``, ``best.pt``.

        Raises:
            CheckpointError: a write failed (disk full, ...); the earlier files are intact.
        """
        self._last_save = time.monotonic()
        if not distributed.is_main():
            return
        state = self._state()
        last = self.checkpoints / "last.pt"
        if last.exists():
            _keep_previous(last, self.checkpoints / "last.prev.pt")
        save_checkpoint(state, last)
        if best:
            save_checkpoint(state, self.checkpoints / "best.pt")

    def _replay_log(self) -> None:
        if distributed.is_main():
            cut_log(self.out / "metrics.jsonl", self.epochs_done, self.batches_done)

    def _announce(self) -> None:
        """What is trained on, from what, and from where (rank 0, stdout)."""
        if distributed.is_main():
            resumed_at = (self.epochs_done, self.batches_done, self.checkpoints / "last.pt") if self.resumed else None
            for line in describe_run(self.config, self.corpus, resumed_at):
                tqdm.write(line)

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

    def finished(self) -> str | None:
        """Why a resumed run has nothing left to train, and what to raise to train more; None
        when it has (an interrupted run, or a finished one given more epochs or time)."""
        t = self.config.training
        if self.epochs_done >= t.epochs:
            return f"{self.epochs_done} epochs done, training.epochs is {t.epochs}: raise it to train more"
        if t.early_stop_epochs and self.stale_epochs >= t.early_stop_epochs:
            return (f"stopped early, no better validation EER in its last {self.stale_epochs} epochs "
                    f"(training.early_stop_epochs is {t.early_stop_epochs}): raise it to train more")
        if self._out_of_time():
            return (f"its training time is spent ({self.train_time_s:.0f} s, training.max_time_s is "
                    f"{t.max_time_s:g}): raise it to train more")
        return None

    def run(self) -> TrainResult:
        finished = self.finished() if self.resumed else None
        if distributed.is_main():
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise WriteError(str(self.out), error.strerror or str(error)) from None
            if finished is None:  # a finished run's config.yml stays the one it was trained with
                save_config(self.config, self.out / "config.yml")
        interrupted, stop_signal = self._train() if finished is None else (False, None)
        t = self.config.training
        if not interrupted and finished is None and distributed.is_main() and (note := no_improvement_note(
                self.history,
                imprinted=bool(t.imprint_head_chunks) or not imprintable(self.step.loss),
                label_loss=self.config.distill.label_loss)):
            print(note, flush=True)
        if not interrupted:  # the front-end chosen on validation, stored in the checkpoints (rank 0)
            after_training(self.out, self.config, self.device, self.progress)
        best = self.checkpoints / "best.pt"
        return TrainResult(
            str(self.out), self.epochs_done, self.batches_done, self.best_eer,
            str(best) if best.exists() else None, str(self.checkpoints / "last.pt"),
            self.train_time_s, self.history, interrupted, stop_signal, self.skipped_nonfinite, finished,
        )

    def _train(self) -> tuple[bool, int | None]:
        """The epochs still to train; ``(interrupted, the signal that stopped it)``."""
        from ..data.sampler import close_loader, make_loader

        self._announce()
        if self.resumed:
            self._replay_log()
        self._last_save = time.monotonic()
        self._tensorboard = self._open_tensorboard()
        t = self.config.training
        dataset = build_dataset(self.config, self.corpus, start_batch=self.batches_done)
        loader = iter(make_loader(dataset, num_workers=self.config.data.num_workers,
                                  pin_memory=self.device.type == "cuda"))
        interrupted, stop_signal = False, None
        try:
            with _StopRequest() as stop:
                if not self.resumed and t.imprint_head_chunks:
                    self._imprint(dataset)
                if not self.resumed and validates_at_start(self.config):
                    self._validate_start()
                while self.epochs_done < t.epochs and not interrupted:
                    interrupted = self._epoch(loader, stop)
                    if interrupted:
                        stop_signal = stop.signal
                        self._save()
                        break
                    finished = self._end_epoch() or self._out_of_time()
                    if distributed.any_rank((stop.requested,), self.device)[0]:
                        # Stopped during validation: the epoch's checkpoint is saved; nothing more runs
                        # (not the next epoch, not the front-end selection after the last one).
                        interrupted, stop_signal = True, stop.signal
                        break
                    if finished:
                        break
        finally:
            close_loader(loader)
        if self._tensorboard is not None:
            self._tensorboard.close()
        return interrupted, stop_signal

    def _epoch(self, loader, stop: _StopRequest) -> bool:
        """Train up to the end of the current epoch; True if a stop was requested."""
        from ..data.sampler import next_batch

        t = self.config.training
        first = max(0, self.batches_done - self.epochs_done * t.batches_per_epoch)
        bar = progress_bar(enabled=self.progress, total=t.batches_per_epoch, initial=first, unit="batch",
                   desc=f"epoch {self.epochs_done + 1}/{t.epochs}", dynamic_ncols=True, leave=False)
        self.step.train()
        if first == 0:
            self.epoch_losses = []
        running, batches, started = self.epoch_losses, 0, time.perf_counter()
        clock = started  # training time is accounted batch by batch; checkpoint writing is not counted
        for index in range(first, t.batches_per_epoch):
            waveforms, labels = next_batch(loader)
            loss = self._train_batch(waveforms.to(self.device, non_blocking=True),
                                     labels.to(self.device, non_blocking=True))
            self.batches_done += 1
            batches += 1
            if loss is not None:
                running.append(loss)
            now = time.perf_counter()
            self.train_time_s += now - clock
            clock = now
            rate = batches * len(labels) * distributed.world_size() / max(now - started, 1e-9)
            shown = f"{np.mean(running[-20:]):.3f}" if running else "nan"
            bar.set_postfix(loss=shown, chunks_per_s=f"{rate:.0f}")
            bar.update()
            if self.batches_done % t.log_every_batches == 0:
                recent = running[-t.log_every_batches:]
                self._log({"batch": self.batches_done, "loss": float(np.mean(recent)) if recent else None,
                           "lr": self.scheduler.get_last_lr()[0], "network_lr": self.scheduler.get_last_lr()[-1],
                           "chunks_per_s": rate,
                           "skipped_nonfinite": self.skipped_nonfinite})
            out_of_time, stop_now = distributed.any_rank((self._out_of_time(), stop.requested), self.device)
            if out_of_time:
                break
            if stop_now:
                bar.close()
                return True
            if index + 1 < t.batches_per_epoch and self._checkpoint_due():
                self._save()  # mid-epoch; the end of the epoch saves anyway
                clock = time.perf_counter()
        bar.close()
        self._epoch_loss = float(np.mean(running)) if running else float("nan")
        return False

    def _checkpoint_due(self) -> bool:
        t = self.config.training
        if t.checkpoint_every_batches and self.batches_done % t.checkpoint_every_batches == 0:
            return True
        return bool(t.checkpoint_every_s) and time.monotonic() - self._last_save >= t.checkpoint_every_s

    def _out_of_time(self) -> bool:
        limit = self.config.training.max_time_s
        return limit is not None and self.train_time_s >= limit

    def _train_batch(self, waveforms: torch.Tensor, labels: torch.Tensor) -> float | None:
        """One optimiser step; ``None`` when the batch was skipped for a non-finite loss or gradient."""
        if self.freeze.apply(self.batches_done):
            self.ddp_step = distributed.wrap(self.step, self.device)
        use_amp = self.config.training.amp and self.device.type == "cuda"
        buffers = [(b, b.detach().clone()) for b in self.step.buffers()]  # batch-norm statistics, restored on a skip
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, _ = self.ddp_step(waveforms, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = [p for p in self.step.parameters() if p.grad is not None]
        clip = self.config.training.grad_clip_norm
        if clip:
            norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters])) \
                if parameters else torch.zeros(())
        value = float(loss.detach())
        # Every rank takes the same decision (DDP averages gradients, but a loss is per rank).
        (bad,) = distributed.any_rank((not (math.isfinite(value) and bool(torch.isfinite(norm))),), self.device)
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)
            with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended
                warnings.simplefilter("ignore")
                self.scheduler.step()  # the schedule follows batches, skipped or not
            self.skipped_nonfinite += 1
            self.nonfinite_in_row += 1
            limit = self.config.training.max_nonfinite_steps
            if self.nonfinite_in_row >= limit:
                raise TrainingError(
                    f"{self.nonfinite_in_row} batches in a row (up to batch {self.batches_done + 1}) had a NaN or "
                    f"infinite loss or gradient (loss {value}) and were skipped (training.max_nonfinite_steps="
                    f"{limit}): lower optimizer.lr, set training.grad_clip_norm or check the data"
                    + (f"; {last} holds the last checkpoint" if (last := self.checkpoints / "last.pt").exists() else "")
                )
            return None
        self.nonfinite_in_row = 0
        self.optimizer.step()
        self.scheduler.step()
        return value

    def _imprint(self, dataset) -> None:
        """The loss head's class weights from the network's embeddings (``training.imprint_head_chunks``);
        every rank computes the same weights from the same chunks."""
        chunks = self.config.training.imprint_head_chunks
        seconds = imprint_head(self.step.model, self.step.loss, dataset.class_batches(chunks), self.device,
                               self.progress, dataset.class_batch_count(chunks))
        if distributed.is_main():
            tqdm.write(f"loss head imprinted: each of {dataset.num_speakers} classes starts at the mean direction "
                       f"of its {chunks} chunk{'s' if chunks > 1 else ''}' embeddings ({seconds:.0f} s)")

    def _validate_start(self) -> None:
        """Epoch 0: the starting model's validation EER, logged, printed and saved as ``best.pt``
        (a run that never beats it keeps it); once, not again on ``--resume``."""
        eer = validate(self.step.model, self.config, self.device, self.progress) if distributed.is_main() else None
        self.best_eer = distributed.broadcast_float(eer, self.device)
        record = start_record(self.best_eer)
        self.history.append(record)
        self._log(record)
        self._save(best=self.best_eer is not None)
        if self.progress and self.best_eer is not None:
            print(f"epoch 0 (starting model): validation EER {self.best_eer:.2f}%", flush=True)

    def _end_epoch(self) -> bool:
        """Validate, checkpoint, log; True when early stopping says stop."""
        self.epochs_done += 1
        try:
            eer = validate(self.step.model, self.config, self.device, self.progress) if distributed.is_main() else None
        except VoxmetricError:
            # Unusable validation audio: keep the epoch's training (resumed, this epoch is validated again).
            self.epochs_done -= 1
            self._save()
            raise
        eer = distributed.broadcast_float(eer, self.device)
        improved = eer is not None and (self.best_eer is None or eer < self.best_eer)
        if improved:
            self.best_eer, self.stale_epochs = eer, 0
        elif eer is not None:
            self.stale_epochs += 1
        record = {"epoch": self.epochs_done, "batch": self.batches_done, "train_loss": self._epoch_loss,
                  "val_eer": eer, "train_time_s": round(self.train_time_s, 2),
                  "skipped_nonfinite": self.skipped_nonfinite}
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
