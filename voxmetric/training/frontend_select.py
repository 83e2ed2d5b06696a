"""Choosing a checkpoint's extraction settings (window and step) on validation.

A network trained on short chunks need not embed best with the config's windows: the
bundled retraining measured 11.01 % EER with 3 s windows every 0.1 s (120 s of extraction)
against 10.28 % with whole utterances (14 s). So at the end of training (rank 0, after
the last epoch) the best checkpoint's validation EER is measured with the ``frontend:``
section's window and step and with each of ``validation.frontend_candidates`` (default:
whole utterance, 2 s windows every 1 s, 3 s every 1.5 s); the lowest EER wins, a tie goes
to the candidate with fewer windows per minute of audio (the cheaper one; whole utterance
counts one), then to the earlier in the list (the config's own first). The winner becomes
the ``frontend`` of ``best.pt`` and ``last.pt`` (which ``embed``, ``verify``, ``calibrate``
and ``export`` of a checkpoint read; explicit ``--window`` / ``--step`` still override),
each candidate's EER goes to ``metrics.jsonl`` and the checkpoints (``frontend_selection``),
and a one-line summary is printed. ``validation.select_frontend: false`` turns it off.

Cost: every validation file is read, trimmed and level-normalised once for all candidates
(:meth:`~voxmetric.inference.frontend.Frontend.embed_each`) and, for frame-local networks,
its frames are computed once; the scores and EERs come from
:func:`~voxmetric.evaluate.pipeline.evaluate_trials`, as per-epoch validation's do
(:func:`~voxmetric.training.setup.validate`). Per-epoch validation keeps the ``frontend:``
section, so that epochs stay comparable.

A finished run (or one trained before this step existed) is handled the same way by
:func:`select_for_run` (``voxmetric train CONFIG --out EXP_DIR --select-frontend-only``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import audio
from ..errors import CheckpointError, ConfigError
from ..evaluate.extract import window_starts
from ..fileio import progress_bar
from ..inference.checkpoint import load_checkpoint, save_checkpoint
from ..inference.frontend import Frontend, FrontendSettings
from . import distributed
from .config import Config
from .setup import frontend_settings, resolve_device

SELECTION_KEY = "frontend_selection"
"""Key of the selection record in checkpoints (and of its candidates in ``metrics.jsonl``)."""
COST_MINUTE_S = 60.0
"""Tie-break: windows a candidate needs for this many seconds of audio."""


def candidate_settings(config: Config) -> list[FrontendSettings]:
    """The config's own front-end, then each ``validation.frontend_candidates`` window and step
    (VAD and level: the config's); repeats dropped (whole-utterance candidates ignore the step)."""
    own = frontend_settings(config)
    settings, seen = [], set()
    for window_s, step_s in [(own.window_s, own.step_s)] + [(c.window_s, c.step_s)
                                                            for c in config.validation.frontend_candidates]:
        key = (window_s, None if window_s is None else step_s)
        if key not in seen:
            seen.add(key)
            settings.append(own.replace(window_s=window_s, step_s=step_s))
    return settings


def windows_per_minute(settings: FrontendSettings) -> int:
    """Network windows a :data:`COST_MINUTE_S` input needs (whole utterance: 1), placed as
    :func:`~voxmetric.evaluate.extract.window_starts` places them: the tie-break's cost."""
    if settings.window_s is None:
        return 1
    rate = audio.SAMPLE_RATE_HZ
    return len(window_starts(int(COST_MINUTE_S * rate), max(1, round(settings.window_s * rate)),
                             max(1, round(settings.step_s * rate))))


def describe(settings: FrontendSettings) -> str:
    """``"whole utterance"`` or ``"2 s/1 s windows"`` (window / step)."""
    if settings.window_s is None:
        return "whole utterance"
    return f"{settings.window_s:g} s/{settings.step_s:g} s windows"


@dataclass(frozen=True)
class CandidateResult:
    """One candidate's validation EER (percent) and cost (:func:`windows_per_minute`)."""

    settings: FrontendSettings
    val_eer: float
    windows_per_minute: int
    from_config: bool  # the config's own frontend: section
    scores: np.ndarray | None = field(default=None, repr=False, compare=False)  # cosine, in trial order
    labels: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"window_s": self.settings.window_s, "step_s": self.settings.step_s, "val_eer": self.val_eer,
                "windows_per_minute": self.windows_per_minute, "from_config": self.from_config}


@dataclass(frozen=True)
class FrontendChoice:
    """Every candidate's result and the chosen one (:func:`choose`)."""

    results: tuple[CandidateResult, ...]
    chosen: CandidateResult

    def summary(self) -> str:
        """``front-end chosen on validation: whole utterance (EER 9.80%; 3 s/0.1 s windows
        (config) 11.01%, ...)``."""
        def name(result: CandidateResult) -> str:
            return describe(result.settings) + (" (config)" if result.from_config else "")

        others = ", ".join(f"{name(r)} {r.val_eer:.2f}%" for r in self.results if r is not self.chosen)
        return (f"front-end chosen on validation: {name(self.chosen)} (EER {self.chosen.val_eer:.2f}%"
                + (f"; {others})" if others else ")"))


def choose(results: list[CandidateResult]) -> FrontendChoice:
    """The lowest validation EER; ties: fewer windows per minute, then the earlier candidate."""
    best = min(range(len(results)), key=lambda i: (results[i].val_eer, results[i].windows_per_minute, i))
    return FrontendChoice(tuple(results), results[best])


class _EachFileOnce:
    """Embeds the validation files once for every candidate; :meth:`view` is the embedder that
    :func:`~voxmetric.evaluate.pipeline.evaluate_trials` sees for one of them."""

    def __init__(self, frontend: Frontend, settings: list[FrontendSettings], progress: bool):
        self.frontend, self.settings, self.progress = frontend, settings, progress
        self.windows = [(s.window_s, s.step_s) for s in settings]
        self._paths: list[str] | None = None
        self._rows: list[list[np.ndarray]] = []

    def matrix(self, paths: list[str], index: int) -> np.ndarray:
        if paths != self._paths:
            bar = progress_bar(paths, enabled=self.progress, desc="choosing the front-end", unit="file", leave=False)
            self._rows = [self.frontend.embed_each(path, self.windows) for path in bar]
            self._paths = list(paths)
        if not self._rows:
            return np.zeros((0, self.frontend.embedding_dim), dtype=np.float32)
        return np.stack([row[index] for row in self._rows])

    def view(self, index: int) -> "_CandidateView":
        return _CandidateView(self, index)


@dataclass
class _CandidateView:
    shared: _EachFileOnce
    index: int

    @property
    def settings(self) -> FrontendSettings:
        return self.shared.settings[self.index]

    def embed_files(self, paths, progress: bool = False) -> np.ndarray:
        return self.shared.matrix([str(p) for p in paths], self.index)


def measure(network: torch.nn.Module, config: Config, device: torch.device | str = "cpu",
            progress: bool = False) -> FrontendChoice:
    """Validation EER of ``network`` with every :func:`candidate_settings`, and the choice.

    Raises:
        ConfigError: no ``validation.trials``.
    """
    from ..evaluate.pipeline import evaluate_trials

    if not config.validation.trials:
        raise ConfigError("validation.trials is required to choose the front-end on validation")
    settings = candidate_settings(config)
    shared = _EachFileOnce(Frontend(network, settings[0], device), settings, progress)
    results = []
    for index, candidate in enumerate(settings):
        metrics = evaluate_trials(shared.view(index), config.validation.trials, config.validation.root,
                                  n_bootstrap=0, progress=False)
        results.append(CandidateResult(candidate, metrics["cosine"]["eer"] * 100, windows_per_minute(candidate),
                                       from_config=index == 0, scores=metrics["scores"], labels=metrics["labels"]))
    return choose(results)


def _checkpoints(out_dir: Path) -> tuple[Path, Path]:
    """``(checkpoint to measure, last.pt)``: ``best.pt`` when there is one, else ``last.pt``."""
    folder = out_dir / "checkpoints"
    last, best = folder / "last.pt", folder / "best.pt"
    if not last.exists():
        raise CheckpointError(f"{last}: no such checkpoint: train the run first (voxmetric train CONFIG --out "
                              f"{out_dir})")
    return (best if best.exists() else last), last


def _record(choice: FrontendChoice, config: Config, measured: Path, measured_state: dict, last_state: dict) -> dict:
    """What is stored in the checkpoints and appended to ``metrics.jsonl`` (plain values; ``batch``
    is the run's, so that a ``--resume`` keeps the record; no ``epoch``: it is no epoch record)."""
    return {"batch": last_state["batches_done"],
            SELECTION_KEY: [r.to_dict() for r in choice.results],
            "frontend_chosen": choice.chosen.settings.to_dict(),
            "chosen_on": {"checkpoint": measured.name, "epochs_done": measured_state.get("epochs_done")},
            "trials": config.validation.trials, "root": config.validation.root}


def _already_chosen(last_state: dict, config: Config) -> bool:
    """``last.pt`` holds a selection made at its own batch with these candidates and trials
    (a ``--resume`` of a finished run, which trains nothing): nothing to redo."""
    stored = last_state.get(SELECTION_KEY)
    if not isinstance(stored, dict):
        return False
    candidates = [(r["window_s"], r["step_s"]) for r in stored.get(SELECTION_KEY, [])]
    wanted = [(s.window_s, s.step_s) for s in candidate_settings(config)]
    chosen = FrontendSettings.from_dict(stored.get("frontend_chosen") or {})
    own = frontend_settings(config)
    return (stored.get("batch") == last_state["batches_done"] and candidates == wanted
            and (chosen.vad, chosen.rms_dbfs) == (own.vad, own.rms_dbfs)
            and (stored.get("trials"), stored.get("root")) == (config.validation.trials, config.validation.root))


def select_for_run(out_dir: str | os.PathLike, config: Config, device: torch.device | str | None = None,
                   progress: bool = False, reuse: bool = False) -> FrontendChoice | None:
    """Choose the front-end of the run in ``out_dir`` on ``config``'s validation trials and store it.

    Measures ``checkpoints/best.pt`` (else ``last.pt``: a run without a best checkpoint),
    writes the winner as the ``frontend`` of ``best.pt`` and ``last.pt`` (atomically, with the
    record under :data:`SELECTION_KEY`) and appends the record to ``metrics.jsonl``. With
    ``reuse``, a selection ``last.pt`` already holds for this state, candidates and trials is
    kept (nothing measured, None returned). Rank 0 only: other ranks return None.

    Raises:
        ConfigError: no ``validation.trials``.
        CheckpointError: no ``last.pt``; unreadable or unwritable checkpoints (named).
    """
    from ..inference.loading import build_network, read_source

    if not distributed.is_main():
        return None
    out = Path(out_dir)
    measured, last = _checkpoints(out)
    last_state = load_checkpoint(last)
    if reuse and _already_chosen(last_state, config):
        return None
    source = read_source(measured)
    network = build_network(source.model, source.weights, str(measured))
    choice = measure(network, config, resolve_device(config.training.device) if device is None else device,
                     progress)
    measured_state = last_state if measured == last else load_checkpoint(measured)
    record = _record(choice, config, measured, measured_state, last_state)
    update = {"frontend": choice.chosen.settings.to_dict(), SELECTION_KEY: record}
    calibrated = {**update, **_calibration(choice.chosen, config, progress)}  # of the measured weights only

    def fresh(state: dict) -> dict:  # an earlier selection's calibration never outlives it
        return {key: value for key, value in state.items() if key not in CALIBRATION_KEYS}

    if measured != last:
        save_checkpoint({**fresh(measured_state), **calibrated}, measured)
    # last: a crash before it means a --resume redoes this
    save_checkpoint({**fresh(last_state), **(calibrated if measured == last else update)}, last)
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return choice


CALIBRATION_KEYS = ("calibration", "threshold", "calibrated_on")
"""What :func:`_calibration` adds to the measured checkpoint."""


def _calibration(chosen: CandidateResult, config: Config, progress: bool) -> dict[str, Any]:
    """``{"calibration", "threshold", "calibrated_on"}`` fitted on the chosen front-end's
    validation scores (:func:`voxmetric.evaluate.operating_point.calibrate_from_scores`: the
    regularised LLR fit and the EER threshold), so that ``verify CHECKPOINT a b`` decides; empty
    when the pairs cannot be fitted (one kind missing), with a note."""
    from ..errors import VoxmetricError
    from ..evaluate.operating_point import calibrate_from_scores

    if chosen.scores is None:
        return {}
    try:
        fit = calibrate_from_scores(chosen.scores, chosen.labels, n_bootstrap=100, seed=0)
    except VoxmetricError as error:
        if progress:
            print(f"note: no calibration stored in the checkpoint ({error}); run voxmetric calibrate", flush=True)
        return {}
    return {"calibration": fit.calibration.to_dict(), "threshold": fit.threshold,
            "calibrated_on": {"trials": config.validation.trials, "n_target": fit.n_target,
                              "n_nontarget": fit.n_nontarget, "eer": fit.eer}}


def after_training(out_dir: str | os.PathLike, config: Config, device: torch.device, progress: bool) -> None:
    """The trainer's last step: :func:`select_for_run` when ``validation.select_frontend`` is on
    and there are validation trials, unless ``last.pt`` holds this very selection already (a
    ``--resume`` of a finished run); prints the summary line with ``progress``."""
    if not (config.validation.select_frontend and config.validation.trials):
        return
    choice = select_for_run(out_dir, config, device, progress, reuse=True)
    if choice is not None and progress:
        from tqdm import tqdm

        tqdm.write(choice.summary())
