"""Evaluation pipelines: trial lists in, embeddings, scores and metrics out.

Every path that measures a network on a trial list goes through here with an
*embedder*: anything with ``embed_files(paths, progress=...) -> (files, dim)`` and
``settings`` (with ``to_dict()``), i.e. the one front-end
:class:`voxmetric.inference.frontend.Frontend` or a
:class:`voxmetric.inference.speaker_model.SpeakerModel`. Training validation,
``compare``, ``calibrate`` and ``embed`` + ``score`` + ``eval`` therefore embed each file
the same way and give the same scores. This package never imports the embedders:
they are handed in.

Trial keys are resolved to files by :func:`voxmetric.data.trials.key_paths`; scores by
:func:`~voxmetric.evaluate.scoring.score_trials`; metrics by
:func:`~voxmetric.evaluate.metrics.evaluate_scores`.

Score files hold one trial a line, ``SCORE ENROL TEST``, the score written with 17
significant digits (the float64 round-trips exactly).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..data.trials import Trial, key_paths, read_trials, trial_keys, trial_root
from ..errors import TrialsError, VoxmetricError
from ..fileio import atomic_open
from .embeddings import EmbeddingTable
from .metrics import DEFAULT_N_BOOTSTRAP, evaluate_scores
from .scoring import DEFAULT_TOP_N, score_trials, speaker_means


def embed_trial_files(embedder, trials_path: str | os.PathLike, trials: list[Trial],
                      root: str | os.PathLike | None = None, progress: bool = True) -> EmbeddingTable:
    """Embed every distinct file of a trial list once, indexed by trial key."""
    keys = trial_keys(trials)
    if not keys:
        raise TrialsError(f"{trials_path}: no trials")
    paths = key_paths(keys, trial_root(trials_path, root, keys[0]), trials_path)
    return EmbeddingTable(keys, embedder.embed_files([str(p) for p in paths], progress=progress),
                          source=os.fspath(trials_path))


def trial_scores(embedder, trials_path: str | os.PathLike, root: str | os.PathLike | None = None,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, labels)`` of a trial list, in its order: cosine of the embedder's embeddings."""
    trials = read_trials(trials_path)
    table = embed_trial_files(embedder, trials_path, trials, root, progress)
    return score_trials(trials, table, source=os.fspath(trials_path)), np.array([t.label for t in trials])


def evaluate_trials(
    embedder,
    trials_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    cohort: np.ndarray | None = None,
    top_n: int = DEFAULT_TOP_N,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Embed, score and measure a trial list with ``embedder`` (module docstring).

    Returns:
        ``{"cosine": metrics, "snorm": metrics or None, "scores", "snorm_scores",
        "labels", "frontend"}`` where metrics are :func:`evaluate_scores` dictionaries,
        the arrays are in trial order and ``frontend`` the embedder's settings.
    """
    trials = read_trials(trials_path)
    table = embed_trial_files(embedder, trials_path, trials, root, progress)
    labels = np.array([t.label for t in trials])
    scores = score_trials(trials, table, source=str(trials_path))
    result: dict[str, Any] = {
        "cosine": evaluate_scores(scores, labels, n_bootstrap=n_bootstrap, seed=seed),
        "snorm": None, "scores": scores, "snorm_scores": None, "labels": labels,
        "frontend": embedder.settings.to_dict(),
    }
    if cohort is not None:
        snorm = score_trials(trials, table, cohort=cohort, top_n=min(top_n, len(cohort)), source=str(trials_path))
        result["snorm"] = evaluate_scores(snorm, labels, n_bootstrap=n_bootstrap, seed=seed)
        result["snorm_scores"] = snorm
    return result


def cohort_embeddings(embedder, corpus, utterances_per_speaker: int, seed: int = 0,
                      progress: bool = False) -> np.ndarray:
    """Adaptive s-norm cohort: one mean embedding per speaker of ``corpus``.

    Each speaker is represented by up to ``utterances_per_speaker`` of its utterances,
    drawn with ``seed``, embedded by ``embedder`` (the same front-end as the trials).
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for utterances in corpus.by_speaker().values():
        count = min(len(utterances), utterances_per_speaker)
        chosen += [utterances[i] for i in sorted(rng.choice(len(utterances), count, replace=False))]
    matrix = embedder.embed_files([u.path for u in chosen], progress=progress)
    _, means = speaker_means([u.uid for u in chosen], matrix, {u.uid: u.speaker for u in chosen})
    return means


def score_file(trials_path: str, embeddings_path: str, out: str, cohort_path: str | None = None,
               top_n: int = DEFAULT_TOP_N) -> int:
    """``voxmetric score``: score every trial, write ``SCORE ENROL TEST`` lines atomically."""
    trials = read_trials(trials_path)
    table = EmbeddingTable.load(embeddings_path)
    cohort = EmbeddingTable.load(cohort_path).matrix if cohort_path else None
    scores = score_trials(trials, table, cohort=cohort, top_n=top_n, source=trials_path)
    with atomic_open(out) as f:
        for trial, score in zip(trials, scores):
            f.write(f"{score:.17g} {trial.enrol} {trial.test}\n")
    return len(trials)


def read_scores(path: str) -> dict[tuple[str, str], float]:
    """Read a score file: ``SCORE ENROL TEST`` per line -> {(enrol, test): score}."""
    if not os.path.isfile(path):
        raise VoxmetricError(f"{path}: no such score file")
    scores: dict[tuple[str, str], float] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 3:
                    raise ValueError
                score = float(fields[0])
            except ValueError:
                raise VoxmetricError(f"{path}, line {number}: expected 'SCORE ENROL TEST', got {line.strip()!r}") \
                    from None
            if not np.isfinite(score):
                raise VoxmetricError(f"{path}, line {number}: score is {fields[0]}")
            scores[(fields[1], fields[2])] = score
    if not scores:
        raise VoxmetricError(f"{path}: score file holds no scores")
    return scores


def evaluate_score_file(trials_path: str, scores_path: str, plot_path: str | None = None,
                        json_path: str | None = None, n_bootstrap: int = DEFAULT_N_BOOTSTRAP, seed: int = 0,
                        histogram_path: str | None = None) -> dict[str, Any]:
    """``voxmetric eval``: EER with CI and minDCF of a score file against its trial list."""
    from .plots import plot_det, plot_score_histogram
    from .report import write_results

    trials = read_trials(trials_path)
    by_pair = read_scores(scores_path)
    scores = np.empty(len(trials))
    for i, trial in enumerate(trials):
        score = by_pair.get((trial.enrol, trial.test), by_pair.get((trial.test, trial.enrol)))
        if score is None:
            raise TrialsError(f"{scores_path}: no score for trial {i + 1} of {trials_path} "
                              f"('{trial.enrol}' '{trial.test}')")
        scores[i] = score
    labels = np.array([t.label for t in trials])
    metrics = evaluate_scores(scores, labels, n_bootstrap=n_bootstrap, seed=seed)
    if json_path:
        write_results(metrics, json_path, str(Path(json_path).with_suffix(".md")))
    if plot_path:
        plot_det({Path(scores_path).stem: (scores, labels)}, plot_path)
    if histogram_path:
        plot_score_histogram(scores, labels, histogram_path)
    return metrics
