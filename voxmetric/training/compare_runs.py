"""The trained runs of a loss comparison: what the report keeps of each, and reusing them.

``compare --reuse-runs DIR`` tests the networks an earlier ``compare`` trained in ``DIR``
on the (possibly different) evaluation trials of the current config, without training
again. It is only the same experiment if the networks are the ones this config would
train, so before any testing every run is checked: its folder, ``config.yml`` and
``train_result.json`` exist, the run was not interrupted, its saved config equals the
current run's config in every key that changes what is trained or which checkpoint is
selected (:data:`REUSE_FIXED_SECTIONS`, less :data:`REUSE_FREE_KEYS`), and the checkpoint
to test (``best.pt`` when validation chose one, else ``last.pt``) is there. The first
problem found is an error naming the file and the differing keys.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError
from .config import Config, config_from_dict, read_yaml
from .run_state import _changed_keys

REUSE_FIXED_SECTIONS = ("seed", "init_from", "data", "model", "loss", "optimizer", "schedule", "training",
                        "frontend", "validation")
"""Config sections a reused run must share with the current config: everything but the
evaluation (test trials, s-norm, bootstrap) and the description. The front-end and the
validation trials are fixed too: they decide which checkpoint is the best one."""
REUSE_FREE_KEYS = frozenset({"data.num_workers", "training.device", "training.log_every_batches",
                             "training.checkpoint_every_batches", "training.checkpoint_every_s"})
"""...except these: where the batches are made, on which device, and how often logs and
checkpoints are written do not change the trained weights."""


def last_third_change(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Validation EER change (percentage points) over a run's last third of epochs.

    With ``E`` epochs validated, it compares epoch ``E`` with epoch ``E - ceil(E / 3)``
    (9 epochs: epoch 9 against epoch 6). None without validation or with one epoch.
    """
    evals = [(r["epoch"], r["val_eer"]) for r in history if r.get("val_eer") is not None]
    if len(evals) < 2:
        return None
    k = len(evals) - math.ceil(len(evals) / 3) - 1
    (start_epoch, start), (end_epoch, end) = evals[max(0, k)], evals[-1]
    return {"from_epoch": start_epoch, "to_epoch": end_epoch, "from_eer": start, "to_eer": end,
            "change": end - start}


def eer_standard_error(eer_percent: float, n_target: int, n_nontarget: int) -> float:
    """Approximate standard error (percentage points) of an EER measured on ``n_target`` and
    ``n_nontarget`` trials.

    At the EER point the miss and false-alarm rates both equal p; each is a binomial
    proportion and the EER is their average, so (as for the half total error rate,
    Bengio & Mariethoz 2004) SE = sqrt(p (1 - p) / 4 * (1 / n_target + 1 / n_nontarget)).
    """
    p = min(max(eer_percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / 4.0 * (1.0 / n_target + 1.0 / n_nontarget))


def plateau_verdict(change: dict[str, Any], n_target: int, n_nontarget: int) -> dict[str, Any]:
    """Whether a run's validation EER had flattened over its last third (:func:`last_third_change`).

    The noise of a change between two validation EERs is taken as 1.96 x sqrt(2) x their
    standard error (:func:`eer_standard_error` at the mean of the two EERs): the 95% bound of
    the difference of two independent measurements, conservative for two models scored on
    the same trials. ``plateau``: the change is within that noise; ``improving``: the EER fell
    by more (training stopped too early); ``rising``: it rose by more (the tested checkpoint,
    the best-validation one, is then earlier than the last).
    """
    mean = (change["from_eer"] + change["to_eer"]) / 2
    noise = 1.96 * math.sqrt(2.0) * eer_standard_error(mean, n_target, n_nontarget)
    verdict = "plateau" if abs(change["change"]) <= noise else ("improving" if change["change"] < 0 else "rising")
    return {"verdict": verdict, "noise": noise}


def tested_checkpoint(run_dir: Path, record: dict[str, Any]) -> Path:
    """The checkpoint a run is tested with: the best validation EER's, else the last."""
    return run_dir / "checkpoints" / ("best.pt" if record["best_checkpoint"] else "last.pt")


def run_summary(record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """What the report keeps of one training run; ``record`` holds the fields of
    :class:`voxmetric.training.trainer.TrainResult` (as in the run's ``train_result.json``)."""
    return {
        "run_dir": str(run_dir.resolve()), "batches": record["batches_done"], "epochs": record["epochs_done"],
        "best_val_eer": record["best_eer"], "tested_checkpoint": "best" if record["best_checkpoint"] else "last",
        "val_eer": [r.get("val_eer") for r in record["history"]],
        "val_change_last_third": last_third_change(record["history"]),
        "train_time_s": record["train_time_s"],
    }


@dataclass
class SourceRuns:
    """An earlier comparison's output folder, as its ``results.json`` describes it."""

    dir: Path
    losses: list[str]
    seeds: int
    budget: str | None = None  # the --budget it was trained with (None: the config's epochs)
    threads: int | None = None
    run_dirs: dict[tuple[str, int], Path] = field(default_factory=dict)  # (loss, seed) -> run folder
    cohort_utterances: int | None = None  # evaluation.cohort_utterances_per_speaker of its s-norm cohorts

    def run_dir(self, loss: str, seed: int) -> Path:
        """The folder of a run (a comparison that reused runs points at their first home)."""
        return self.run_dirs.get((loss, seed), self.dir / loss / f"seed{seed}")

    def cohort(self, loss: str, seed: int, utterances_per_speaker: int) -> np.ndarray | None:
        """The s-norm cohort (speaker means) the earlier test of this run computed, if it was
        drawn with ``utterances_per_speaker`` (the training corpus and seed are checked with
        the config): the same embeddings of the same training speech, not computed again."""
        path = self.dir / "scores.npz"
        if utterances_per_speaker != self.cohort_utterances or not path.is_file():
            return None
        with np.load(path) as arrays:
            key = f"{loss}/seed{seed}/cohort"
            return arrays[key] if key in arrays.files else None


def read_source(source_dir: str | Path) -> SourceRuns:
    """Read ``source_dir/results.json``: losses, seeds, budget, threads and run folders."""
    source = Path(source_dir)
    path = source / "results.json"
    if not path.is_file():
        hint = " (a --train-speakers output: give --train-speakers too)" if (source / "scale.json").is_file() else ""
        raise ConfigError(f"{path}: not found: --reuse-runs needs the output folder of a finished compare{hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        losses = [row["loss"] for row in data["results"]]
        run_dirs = {(row["loss"], run["seed"]): source / run["run_dir"]  # relative: inside source
                    for row in data["results"] for run in row["runs"] if run.get("run_dir")}
        cohort_utterances = data["config"]["evaluation"]["cohort_utterances_per_speaker"]
        return SourceRuns(source, losses, int(data["seeds"]), data.get("budget"), data.get("threads"), run_dirs,
                          cohort_utterances)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{path}: not a compare results file ({type(error).__name__}: {error})") from None


def source_train_speakers(source_dir: str | Path) -> list[int] | None:
    """The training-speaker counts of a ``--train-speakers`` output (its ``scale.json``), else None."""
    path = Path(source_dir) / "scale.json"
    if not path.is_file():
        return None
    try:
        return [int(count) for count in json.loads(path.read_text(encoding="utf-8"))["train_speakers"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{path}: not a compare scale file ({type(error).__name__}: {error})") from None


def reused_run(source: SourceRuns, loss: str, run: Config) -> tuple[dict[str, Any], Path]:
    """Check one earlier run against the run ``run`` describes (module docstring); return its
    summary (:func:`run_summary`) and the checkpoint to test."""
    run_dir = source.run_dir(loss, run.seed)
    config_path, record_path = run_dir / "config.yml", run_dir / "train_result.json"
    for path in (config_path, record_path):
        if not path.is_file():
            raise ConfigError(f"{path}: missing: {source.dir} holds no finished run of loss {loss}, seed {run.seed}")
    try:
        saved = config_from_dict(read_yaml(config_path)).to_dict()
    except ConfigError as error:
        raise ConfigError(f"{config_path}: {error}") from None
    changed = _changed_keys(saved, run.to_dict(), REUSE_FIXED_SECTIONS, free=REUSE_FREE_KEYS)
    if changed:
        raise ConfigError(f"{config_path}: trained with a different {', '.join(changed)} than this config; "
                          f"--reuse-runs needs the same training config (only evaluation.* may change)")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("interrupted"):
            raise ConfigError(f"{record_path}: the run was interrupted before its last epoch; finish it first")
        checkpoint = tested_checkpoint(run_dir, record)
        summary = run_summary(record, run_dir)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{record_path}: not a training result ({type(error).__name__}: {error})") from None
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: missing: the {summary['tested_checkpoint']} checkpoint of loss {loss}, "
                              f"seed {run.seed}, the one to test")
    return summary, checkpoint
