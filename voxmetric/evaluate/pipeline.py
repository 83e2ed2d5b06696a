"""Evaluation pipelines: files in, embeddings, scores and metrics out.

The one path every caller takes (``train`` validation, ``compare``, the
``embed`` / ``score`` / ``eval`` commands): trial keys are resolved to audio
files, embedded by :func:`~voxmetric.evaluate.extract.extract_embeddings`,
scored by :func:`~voxmetric.evaluate.scoring.score_trials` and measured by
:func:`~voxmetric.evaluate.metrics.evaluate_scores`.

Score files hold one trial a line, ``SCORE ENROL TEST`` (SPEC section 3).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.trials import read_trials
from ..errors import TrialsError, VoxmetricError
from ..fileio import atomic_open
from .embeddings import EmbeddingTable, save_embeddings
from .extract import extract_embeddings
from .metrics import evaluate_scores
from .scoring import score_trials, speaker_means


def trial_root(trials_path: str | os.PathLike, root: str | os.PathLike | None, first_key: str) -> Path:
    """Folder the trial list's paths are relative to.

    ``root`` when given; otherwise the trial list's folder, or its ``wav/``
    subfolder when the first key is found there (VoxCeleb lists are relative
    to the ``wav`` root, which may sit beside the list).
    """
    if root is not None:
        return Path(root)
    folder = Path(trials_path).resolve().parent
    if not (folder / first_key).exists() and (folder / "wav" / first_key).exists():
        return folder / "wav"
    return folder


def trial_keys(trials) -> list[str]:
    """Unique trial keys, in order of first appearance."""
    return list(dict.fromkeys(key for t in trials for key in (t.enrol, t.test)))


def key_paths(keys: list[str], root: Path) -> list[Path]:
    """The audio file of each trial key: ``root / key``, or in a Kaldi data dir (``root``
    holds ``wav.scp``) the file its utterance id names.

    Paths are only read, and followed wherever they lead: symlinks and absolute paths
    silently (data folders are often links to other disks), relative paths climbing
    out of ``root`` through ``..`` with one warning naming how many and the first.
    """
    if not (root / "wav.scp").is_file():
        paths = [root / key for key in keys]
    else:
        from ..data.kaldi import read_wav_scp

        table = read_wav_scp(str(root / "wav.scp"))
        paths = []
        for key in keys:
            written = Path(table[key][0]) if key in table else Path(key)
            paths.append(written if written.is_absolute() else root / written)
    _warn_escaping(keys, paths, root)
    return paths


def _warn_escaping(keys: list[str], paths: list[Path], root: Path) -> None:
    import warnings

    base = os.path.normpath(os.path.abspath(root))
    escaping = [key for key, path in zip(keys, paths)
                if ".." in Path(path).parts
                and os.path.commonpath([base, os.path.normpath(os.path.abspath(path))]) != base]
    if escaping:
        warnings.warn(f"{root}: {len(escaping)} trial path(s) lead outside this folder through '..' "
                      f"(first: {escaping[0]}); reading them anyway", stacklevel=3)


def embed_keys(model: torch.nn.Module, keys: list[str], root: Path, window_s: float | None, step_s: float,
               device: str | torch.device = "cpu", progress: bool = True) -> EmbeddingTable:
    """Embed the files of the trial keys (:func:`key_paths`) and index the embeddings by key."""
    paths = key_paths(keys, root)
    missing = [key for key, path in zip(keys, paths) if not path.is_file()]
    if missing:
        raise TrialsError(f"{len(missing)} trial files not found under {root}, e.g. '{missing[0]}'")
    ids, matrix = extract_embeddings(model, [str(p) for p in paths], ids=keys, window_s=window_s,
                                     step_s=step_s, device=device, progress=progress)
    return EmbeddingTable(ids, matrix, source=str(root))


def evaluate_trials(
    model: torch.nn.Module,
    trials_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    window_s: float | None = 3.0,
    step_s: float = 0.1,
    device: str | torch.device = "cpu",
    n_bootstrap: int = 1000,
    cohort: np.ndarray | None = None,
    top_n: int = 400,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Embed, score and measure a trial list with ``model``.

    Returns:
        ``{"cosine": metrics, "snorm": metrics or None, "scores", "snorm_scores",
        "labels"}`` where metrics are :func:`evaluate_scores` dictionaries and
        the arrays are in trial order.
    """
    trials = read_trials(trials_path)
    keys = trial_keys(trials)
    table = embed_keys(model, keys, trial_root(trials_path, root, keys[0]), window_s, step_s, device, progress)
    labels = np.array([t.label for t in trials])
    scores = score_trials(trials, table, source=str(trials_path))
    result: dict[str, Any] = {
        "cosine": evaluate_scores(scores, labels, n_bootstrap=n_bootstrap, seed=seed),
        "snorm": None, "scores": scores, "snorm_scores": None, "labels": labels,
    }
    if cohort is not None:
        snorm = score_trials(trials, table, cohort=cohort, top_n=min(top_n, len(cohort)), source=str(trials_path))
        result["snorm"] = evaluate_scores(snorm, labels, n_bootstrap=n_bootstrap, seed=seed)
        result["snorm_scores"] = snorm
    return result


def cohort_embeddings(model: torch.nn.Module, corpus, evaluation, device, seed: int = 0,
                      progress: bool = False) -> np.ndarray:
    """Adaptive s-norm cohort: one mean embedding per training speaker (SPEC section 2).

    Each speaker is represented by up to ``evaluation.cohort_utterances_per_speaker``
    of its utterances, drawn with ``seed``.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for utterances in corpus.by_speaker().values():
        count = min(len(utterances), evaluation.cohort_utterances_per_speaker)
        chosen += [utterances[i] for i in sorted(rng.choice(len(utterances), count, replace=False))]
    ids, matrix = extract_embeddings(model, [u.path for u in chosen], ids=[u.uid for u in chosen],
                                     window_s=evaluation.window_s, step_s=max(evaluation.step_s, 0.5),
                                     device=device, progress=progress)
    _, means = speaker_means(ids, matrix, {u.uid: u.speaker for u in chosen})
    return means


MODEL_SETTING = "model"
"""``embed_files`` window / step value meaning: the model's own extraction setting."""


def embed_files(model_spec: str, paths: list[str], out: str, window_s: float | None | str = MODEL_SETTING,
                step_s: float | str = MODEL_SETTING, device: str = "cpu", progress: bool = True,
                vad: bool = True, ids: list[str] | None = None) -> tuple[int, int]:
    """``voxmetric embed``: embeddings of audio files, ids = the paths as given.

    ``model_spec`` is anything :func:`voxmetric.pretrained.load_model` takes (a bundled
    name, a weights file, a training checkpoint); the files are embedded the way that
    model embeds them (its window, step and input level, 3.0 s / 0.1 s for checkpoints)
    unless ``window_s`` (``None`` = whole file) or ``step_s`` are given. With ``vad``
    (the default, as for ``verify``) non-speech is trimmed first, so that embeddings
    scored here give exactly the scores ``verify`` prints.
    """
    from ..inference.speaker_model import load_model

    model = load_model(model_spec, device=device, vad=vad)
    if window_s != MODEL_SETTING:
        model.set_embedding(window_s=window_s)
    if step_s != MODEL_SETTING:
        model.set_embedding(step_s=step_s)
    matrix = model.embed_batch(paths, progress=progress)
    save_embeddings(out, [str(p) for p in (paths if ids is None else ids)], matrix)
    return matrix.shape


def score_file(trials_path: str, embeddings_path: str, out: str, cohort_path: str | None = None,
               top_n: int = 400) -> int:
    """``voxmetric score``: score every trial, write ``SCORE ENROL TEST`` lines atomically."""
    trials = read_trials(trials_path)
    table = EmbeddingTable.load(embeddings_path)
    cohort = EmbeddingTable.load(cohort_path).matrix if cohort_path else None
    scores = score_trials(trials, table, cohort=cohort, top_n=top_n, source=trials_path)
    with atomic_open(out) as f:
        for trial, score in zip(trials, scores):
            f.write(f"{score:.6f} {trial.enrol} {trial.test}\n")
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
                        json_path: str | None = None, n_bootstrap: int = 1000, seed: int = 0,
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
