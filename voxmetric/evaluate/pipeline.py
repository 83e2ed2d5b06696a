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

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..data.trials import Trial, key_paths, read_trials, trial_keys, trial_root
from ..errors import TrialsError, UsageError, VoxmetricError
from ..fileio import atomic_open, atomic_path, check_writable
from .embeddings import EmbeddingTable, check_same_model
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


def load_scoring_tables(embeddings_path: str, cohort_path: str | None = None, root: str | None = None,
                        keys=()) -> tuple[EmbeddingTable, EmbeddingTable | None]:
    """The trials' embeddings (ids re-keyed relative to ``root`` when given, except those
    already equal to one of ``keys``: :func:`relative_ids`) and the s-norm cohort, refused
    when they record different models (:func:`~voxmetric.evaluate.embeddings.check_same_model`)."""
    table = EmbeddingTable.load(embeddings_path)
    cohort = EmbeddingTable.load(cohort_path) if cohort_path else None
    if cohort is not None:
        check_same_model(table, cohort)
    if root is not None:
        table = table.rekeyed(relative_ids(table.ids, root, keep=keys))
        # named in 'has no embedding' errors; a missing folder is fine where the ids still match
        # (absolute paths of another machine), and the likely mistake where they do not
        missing = "" if os.path.isdir(root) else ", a folder that does not exist"
        table.source = f"{embeddings_path} (ids taken relative to --root {root}{missing})"
    return table, cohort


def relative_ids(ids: list[str], root: str, keep=()) -> list[str]:
    """``ids`` (paths: absolute, or relative to the current folder) as paths relative to ``root``,
    so that ``embed`` output of absolute paths matches the keys of a trial list under ``root``.

    An id equal to one of ``keep`` (the trial keys: ``embed --root`` stores them as given)
    stays as it is, and wins over another id that would become the same key."""
    keep = set(keep) & set(ids)
    base = os.path.abspath(root)
    rekeyed = []
    for uid in ids:
        key = uid if uid in keep else os.path.relpath(os.path.abspath(uid), base).replace(os.sep, "/")
        rekeyed.append(uid if key in keep and key != uid else key)
    return rekeyed


def score_file(trials_path: str, embeddings_path: str, out: str, cohort_path: str | None = None,
               top_n: int = DEFAULT_TOP_N, root: str | None = None) -> dict[str, Any]:
    """``voxmetric score``: score every trial, write ``SCORE ENROL TEST`` lines atomically.

    Args:
        root: the trial keys are relative to this folder and the embedding ids absolute
            (or relative to the current folder) paths: match them as files. Ids that
            already equal a trial key (``embed --root``) match as they are.
        top_n: s-norm cohort scores kept per side; at most the cohort's size.

    Returns:
        ``{"count": trials scored, "top_n": cohort scores used per side or None,
        "cohort_size": embeddings in the cohort or None}``.

    Raises:
        WriteError: ``out`` cannot be written (checked first).
        EmbeddingsError: unreadable files, or embeddings and cohort of different models.
        TrialsError: a trial key without an embedding (naming ``root``, and saying so
            where it does not exist).
    """
    check_writable(out)
    trials = read_trials(trials_path)
    if root is not None:
        trials = [Trial(t.label, os.path.normpath(t.enrol).replace(os.sep, "/"),
                        os.path.normpath(t.test).replace(os.sep, "/")) for t in trials]
    table, cohort = load_scoring_tables(embeddings_path, cohort_path, root, keys=trial_keys(trials))
    used_top = min(int(top_n), len(cohort)) if cohort is not None else None
    scores = score_trials(trials, table, cohort=None if cohort is None else cohort.matrix,
                          top_n=used_top or top_n, source=trials_path)
    original = read_trials(trials_path) if root is not None else trials
    with atomic_open(out) as f:
        for trial, score in zip(original, scores):
            f.write(f"{score:.17g} {trial.enrol} {trial.test}\n")
    return {"count": len(trials), "top_n": used_top, "cohort_size": None if cohort is None else len(cohort)}


def read_scores(path: str) -> dict[tuple[str, str], float]:
    """Read a score file: ``SCORE ENROL TEST`` per line -> {(enrol, test): score}."""
    if os.path.isdir(path):
        raise VoxmetricError(f"{path}: is a directory, not a score file")
    if not os.path.isfile(path):
        raise VoxmetricError(f"{path}: no such score file")
    scores: dict[tuple[str, str], float] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = list(f)
    except UnicodeDecodeError:
        raise VoxmetricError(f"{path}: not a UTF-8 text score file") from None
    except OSError as error:
        raise VoxmetricError(f"{path}: cannot read score file ({error.strerror or error})") from None
    for number, line in enumerate(lines, start=1):
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


PLOT_FORMATS = (".png", ".pdf", ".svg")
"""File name endings ``eval --plot`` / ``--hist`` write."""


def check_plot_path(option: str, path: str | None) -> None:
    """Refuse a plot file name matplotlib would not write as an image (before any work).

    Raises:
        UsageError: ``path`` does not end in one of :data:`PLOT_FORMATS`.
    """
    if path and not path.lower().endswith(PLOT_FORMATS):
        raise UsageError(f"{option} {path}: use a {', '.join(PLOT_FORMATS[:-1])} or {PLOT_FORMATS[-1]} file name")


def _system_names(paths: list[str]) -> list[str]:
    """One name per score file: its stem, or its path where stems repeat."""
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) else list(paths)


def _scores_in_trial_order(trials_path: str, trials, scores_path: str) -> np.ndarray:
    by_pair = read_scores(scores_path)
    scores = np.empty(len(trials))
    for i, trial in enumerate(trials):
        score = by_pair.get((trial.enrol, trial.test), by_pair.get((trial.test, trial.enrol)))
        if score is None:
            raise TrialsError(f"{scores_path}: no score for trial {i + 1} of {trials_path} "
                              f"('{trial.enrol}' '{trial.test}')")
        scores[i] = score
    return scores


def evaluate_score_files(trials_path: str, scores_paths: list[str], plot_path: str | None = None,
                         json_path: str | None = None, n_bootstrap: int = DEFAULT_N_BOOTSTRAP, seed: int = 0,
                         histogram_path: str | None = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``voxmetric eval`` of one or more systems: each score file against the trial list.

    One DET plot with a curve per system, one results row per system (``json_path`` and
    the ``.md`` beside it), score histograms of the first system.

    Returns:
        ``({system name: metrics}, files written)``.

    Raises:
        UsageError: a plot file name that is not .png/.pdf/.svg, no score file.
        WriteError: an output that cannot be written (checked before reading anything).
        TrialsError, VoxmetricError: a trial without a score, a malformed score file.
    """
    from .plots import plot_det, plot_score_histogram
    from .report import write_results

    check_plot_path("--plot", plot_path)
    check_plot_path("--hist", histogram_path)
    if not scores_paths:
        raise UsageError("give at least one --scores file")
    md_path = str(Path(json_path).with_suffix(".md")) if json_path else None
    for path in (json_path, md_path, plot_path, histogram_path):
        if path:
            check_writable(path)
    trials = read_trials(trials_path)
    labels = np.array([t.label for t in trials])
    systems: dict[str, np.ndarray] = {}
    for name, path in zip(_system_names(list(scores_paths)), scores_paths):
        systems[name] = _scores_in_trial_order(trials_path, trials, path)
    metrics = {name: evaluate_scores(scores, labels, n_bootstrap=n_bootstrap, seed=seed)
               for name, scores in systems.items()}
    written = [path for path in (json_path, md_path, plot_path, histogram_path) if path]
    with contextlib.ExitStack() as outputs:
        # Every output goes to a temporary file first; they are renamed only once all are written,
        # so a failure leaves none of them (not the results without the plot).
        tmp = {path: outputs.enter_context(atomic_path(path)) for path in written}
        if json_path:
            write_results(next(iter(metrics.values())) if len(metrics) == 1 else metrics, tmp[json_path],
                          tmp[md_path])
        if plot_path:
            plot_det({name: (scores, labels) for name, scores in systems.items()}, tmp[plot_path])
        if histogram_path:
            plot_score_histogram(next(iter(systems.values())), labels, tmp[histogram_path])
    return metrics, written


def evaluate_score_file(trials_path: str, scores_path: str, plot_path: str | None = None,
                        json_path: str | None = None, n_bootstrap: int = DEFAULT_N_BOOTSTRAP, seed: int = 0,
                        histogram_path: str | None = None) -> dict[str, Any]:
    """EER with CI and minDCF of one score file against its trial list (see :func:`evaluate_score_files`)."""
    metrics, _ = evaluate_score_files(trials_path, [scores_path], plot_path, json_path, n_bootstrap, seed,
                                      histogram_path)
    return next(iter(metrics.values()))
