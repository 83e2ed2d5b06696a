"""Calibrate a model on your own labelled pairs: the ``calibrate`` command.

A threshold tuned on VoxCeleb rejects or accepts far too much on other microphones,
languages and durations. :func:`calibrate_trials` embeds a user's labelled pairs with
the model's own front-end (so exactly as ``verify`` does), scores them and calibrates
on the scores (:func:`voxmetric.evaluate.calibration.calibrate_from_scores`: LLR map,
decision threshold, bootstrap intervals).
"""

from __future__ import annotations

import os

from ..evaluate.operating_point import CalibrationResult, calibrate_from_scores, check_options
from ..evaluate.metrics import DEFAULT_N_BOOTSTRAP
from ..evaluate.pipeline import trial_scores

__all__ = ["CalibrationResult", "calibrate_from_scores", "calibrate_trials"]


def calibrate_trials(model, trials_path: str | os.PathLike, audio_root: str | os.PathLike | None = None,
                     target_far: float | None = None, n_bootstrap: int = DEFAULT_N_BOOTSTRAP, seed: int = 0,
                     prior: float = 0.5, progress: bool = False) -> CalibrationResult:
    """Score a user's trial list with ``model`` and calibrate on it: the ``calibrate`` command.

    Every distinct file is embedded once through the model's front-end (so with exactly
    the preprocessing ``verify`` uses) and each pair scored by cosine similarity
    (:func:`voxmetric.evaluate.pipeline.trial_scores`, as ``compare`` and ``eval`` do).

    Args:
        model: a :class:`voxmetric.inference.speaker_model.SpeakerModel` (any embedder:
            ``embed_files(paths, progress=...) -> (files, dim)``, ``settings``, ``name``).
        trials_path: VoxCeleb (``LABEL A B``) or Kaldi (``A B target``) trial list.
        audio_root: directory the list's paths are relative to (default: the list's own).
        target_far, n_bootstrap, seed, prior: as in :func:`calibrate_from_scores`; the fit
            shrinks toward ``model.calibration`` (the shipped one) when the model has one.
        progress: show a progress bar while embedding.

    Raises:
        TrialsError: unreadable list, or a file it names does not exist.
    """
    check_options(target_far, n_bootstrap)  # before any embedding
    scores, labels = trial_scores(model, trials_path, audio_root, progress)
    return calibrate_from_scores(scores, labels.astype(bool), target_far=target_far, n_bootstrap=n_bootstrap,
                                 seed=seed, prior=prior,
                                 model=getattr(model, "fingerprint", None) or getattr(model, "name", None),
                                 reference=getattr(model, "calibration", None))


def calibrate_pairs(model, trials_path: str | os.PathLike, audio_root: str | os.PathLike | None = None,
                    target_far: float | None = None, n_bootstrap: int = DEFAULT_N_BOOTSTRAP, seed: int = 0,
                    skip_errors: bool = False, progress: bool = False, on_warning=None, jobs: int = 1):
    """``voxmetric calibrate``: :func:`calibrate_trials` with per-file quality warnings and,
    with ``skip_errors``, the pairs of unusable files left out.

    Returns:
        ``(CalibrationResult, failures)``; failures are
        :class:`voxmetric.inference.batch.Failure` rows (empty without ``skip_errors``).
    """
    import numpy as np

    from .enroll import score_trial_pairs

    check_options(target_far, n_bootstrap)  # before any embedding
    batch = score_trial_pairs(model, trials_path, audio_root, skip_errors=skip_errors, progress=progress,
                              on_warning=on_warning, jobs=jobs)
    if not batch.rows:
        from ..errors import CalibrationError

        raise CalibrationError(f"{trials_path}: no pair could be scored ({len(batch.failures)} file(s) failed)")
    scores = np.array([row["score"] for row in batch.rows])
    labels = np.array([row["label"] for row in batch.rows]).astype(bool)
    result = calibrate_from_scores(scores, labels, target_far=target_far, n_bootstrap=n_bootstrap, seed=seed,
                                   model=getattr(model, "fingerprint", None) or getattr(model, "name", None),
                                   reference=getattr(model, "calibration", None))
    return result, batch.failures
