"""Trial scores: cosine similarity and adaptive symmetric score normalisation (s-norm).

A trial list reuses each recording many times (VoxCeleb1-O: 37,720 trials over 4,708
files), so the fast functions take one table of *unique* embeddings plus two row-index
arrays (``enrol_rows``, ``test_rows``) instead of two ``(trials, D)`` matrices: the
per-embedding work (L2 normalisation, cohort statistics) is done once per row, and the
per-trial work is one gathered dot product. :func:`score_trials` maps a trial list onto
an :class:`~voxmetric.evaluate.embeddings.EmbeddingTable` that way.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ArgumentError, VoxmetricError
from .embeddings import EmbeddingTable

DEFAULT_TOP_N = 400
"""Cohort scores kept per embedding by adaptive s-norm (the seed system's value)."""

_TRIALS_PER_CHUNK = 65_536  # two gathered (chunk, 512) float32 blocks: 2 x 128 MiB
_ROWS_PER_CHUNK = 2_048  # one (chunk, cohort) float32 block: 47 MiB for 6,000 speakers


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    """``(N, D)`` float32 rows scaled to unit length (an all-zero row stays zero)."""
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def _check_matrix(name: str, matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ArgumentError(f"{name} must be an (N, D) matrix, got shape {matrix.shape}")
    return matrix


def cosine_scores(enrol: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Cosine similarity of each enrolment row with the test row of the same index.

    Args:
        enrol: ``(trials, D)`` embeddings.
        test: ``(trials, D)`` embeddings.

    Returns:
        ``(trials,)`` float64 scores in [-1, 1].
    """
    enrol, test = _check_matrix("enrol", enrol), _check_matrix("test", test)
    if enrol.shape != test.shape:
        raise ArgumentError(f"enrol {enrol.shape} and test {test.shape} must have the same shape")
    dots = np.einsum("nd,nd->n", l2_normalise(enrol), l2_normalise(test))
    return dots.astype(np.float64)


def _gathered_dots(unit: np.ndarray, enrol_rows: np.ndarray, test_rows: np.ndarray) -> np.ndarray:
    """``(trials,)`` dot products of rows ``enrol_rows[k]`` and ``test_rows[k]`` of ``unit``.

    Chunked (bounded memory) and spread over threads: the gathers and einsum release
    the GIL, and the work is bound by memory traffic, not arithmetic.
    """
    out = np.empty(len(enrol_rows), dtype=np.float64)

    def work(start: int) -> None:
        stop = start + _TRIALS_PER_CHUNK
        out[start:stop] = np.einsum("nd,nd->n", unit[enrol_rows[start:stop]], unit[test_rows[start:stop]])

    starts = range(0, len(out), _TRIALS_PER_CHUNK)
    if len(starts) <= 1:
        for start in starts:
            work(start)
        return out
    with ThreadPoolExecutor(min(_workers(), len(starts))) as pool:
        list(pool.map(work, starts))
    return out


def _check_rows(embeddings: np.ndarray, enrol_rows, test_rows) -> tuple[np.ndarray, np.ndarray]:
    enrol_rows = np.asarray(enrol_rows, dtype=np.int64)
    test_rows = np.asarray(test_rows, dtype=np.int64)
    if enrol_rows.ndim != 1 or enrol_rows.shape != test_rows.shape:
        raise ArgumentError(
            f"enrol_rows {enrol_rows.shape} and test_rows {test_rows.shape} must be (trials,) arrays"
        )
    for rows in (enrol_rows, test_rows):
        if rows.size and (rows.min() < 0 or rows.max() >= len(embeddings)):
            raise ArgumentError(f"row indices must be in [0, {len(embeddings)}), got {rows.min()}..{rows.max()}")
    return enrol_rows, test_rows


def cosine_scores_indexed(embeddings: np.ndarray, enrol_rows, test_rows) -> np.ndarray:
    """Cosine scores of trials given as rows of one embedding table.

    Args:
        embeddings: ``(U, D)`` unique embeddings.
        enrol_rows: ``(trials,)`` row of each trial's enrolment embedding.
        test_rows: ``(trials,)`` row of each trial's test embedding.

    Returns:
        ``(trials,)`` float64 scores.
    """
    embeddings = _check_matrix("embeddings", embeddings)
    enrol_rows, test_rows = _check_rows(embeddings, enrol_rows, test_rows)
    return _gathered_dots(l2_normalise(embeddings), enrol_rows, test_rows)


def _check_top_n(top_n: int, cohort_size: int) -> int:
    if int(top_n) != top_n or top_n < 2:
        raise VoxmetricError(f"s-norm top_n must be an integer >= 2 (a std needs two scores), got {top_n}")
    if cohort_size < 2:
        raise VoxmetricError(f"s-norm cohort holds {cohort_size} embeddings; it needs at least 2")
    if top_n > cohort_size:
        warnings.warn(
            f"s-norm top_n={top_n} exceeds the cohort size {cohort_size}; using the whole cohort",
            stacklevel=3,
        )
    return min(int(top_n), cohort_size)


def cohort_statistics(
    embeddings: np.ndarray, cohort: np.ndarray, top_n: int = DEFAULT_TOP_N
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each embedding's ``top_n`` best cohort scores.

    Each embedding is cosine-scored against every cohort embedding (one float32
    matrix product per chunk of rows); ``np.partition`` then moves the ``top_n``
    highest scores of each row to its end in linear time (no full sort).

    Args:
        embeddings: ``(U, D)`` embeddings.
        cohort: ``(M, D)`` cohort embeddings (training-speaker means), ``M >= 2``.
        top_n: scores kept per embedding; the whole cohort when ``M < top_n`` (warned).

    Returns:
        ``(mean, std)``, two ``(U,)`` float64 arrays; ``std`` is the population standard
        deviation (ddof 0) of the ``top_n`` scores.
    """
    embeddings, cohort = _check_matrix("embeddings", embeddings), _check_matrix("cohort", cohort)
    if embeddings.shape[1] != cohort.shape[1]:
        raise VoxmetricError(
            f"cohort embeddings have dimension {cohort.shape[1]}, trial embeddings {embeddings.shape[1]}"
        )
    top_n = _check_top_n(top_n, len(cohort))
    unit, cohort_t = l2_normalise(embeddings), np.ascontiguousarray(l2_normalise(cohort).T)
    kth = len(cohort) - top_n
    mean = np.empty(len(unit), dtype=np.float64)
    std = np.empty(len(unit), dtype=np.float64)
    buffer = np.empty((min(_ROWS_PER_CHUNK, len(unit)), len(cohort)), dtype=np.float32)
    for start in range(0, len(unit), _ROWS_PER_CHUNK):
        block = unit[start : start + _ROWS_PER_CHUNK]
        scores = buffer[: len(block)]
        np.matmul(block, cohort_t, out=scores)
        scores.partition(kth, axis=1)
        top = scores[:, kth:]
        mean[start : start + len(block)] = top.mean(axis=1, dtype=np.float64)
        std[start : start + len(block)] = top.std(axis=1, dtype=np.float64)
    return mean, std


def adaptive_snorm_indexed(
    embeddings: np.ndarray,
    enrol_rows,
    test_rows,
    cohort: np.ndarray,
    top_n: int = DEFAULT_TOP_N,
    raw_scores: np.ndarray | None = None,
) -> np.ndarray:
    """Adaptive s-norm of trials given as rows of one embedding table.

    For a trial with raw cosine score ``s``, enrolment ``e`` and test ``t``::

        s_norm = ((s - mean_e) / std_e + (s - mean_t) / std_t) / 2

    where ``mean_x`` and ``std_x`` are the mean and standard deviation of the ``top_n``
    highest cosine scores of ``x`` against the cohort (Matejka et al. 2017, "Analysis of
    score normalization in multilingual speaker recognition", adaptive symmetric
    normalisation; the seed system uses training-speaker mean embeddings as the cohort,
    ``top_n = 400``). Statistics are computed once per table row used by some trial.

    Args:
        embeddings: ``(U, D)`` unique embeddings.
        enrol_rows: ``(trials,)`` row of each trial's enrolment embedding.
        test_rows: ``(trials,)`` row of each trial's test embedding.
        cohort: ``(M, D)`` cohort embeddings.
        top_n: cohort scores kept per embedding.
        raw_scores: ``(trials,)`` cosine scores already computed for these trials,
            to skip recomputing them.

    Returns:
        ``(trials,)`` float64 normalised scores.
    """
    embeddings = _check_matrix("embeddings", embeddings)
    enrol_rows, test_rows = _check_rows(embeddings, enrol_rows, test_rows)
    used, inverse = np.unique(np.concatenate([enrol_rows, test_rows]), return_inverse=True)
    mean, std = cohort_statistics(embeddings[used], cohort, top_n)
    # A constant top-N (degenerate cohort) would divide by zero; keep the score finite.
    std = np.maximum(std, 1e-8)
    if raw_scores is None:
        raw_scores = cosine_scores_indexed(embeddings, enrol_rows, test_rows)
    enrol_stat, test_stat = inverse[: len(enrol_rows)], inverse[len(enrol_rows) :]
    enrol_z = (raw_scores - mean[enrol_stat]) / std[enrol_stat]
    test_z = (raw_scores - mean[test_stat]) / std[test_stat]
    return 0.5 * (enrol_z + test_z)


def adaptive_snorm(
    enrol: np.ndarray, test: np.ndarray, cohort: np.ndarray, top_n: int = DEFAULT_TOP_N
) -> np.ndarray:
    """Adaptive s-norm scores of row-paired embeddings (see :func:`adaptive_snorm_indexed`).

    Identical rows are found first (``np.unique``) so each distinct embedding's cohort
    statistics are computed once. For large trial lists prefer :func:`score_trials` or
    :func:`adaptive_snorm_indexed`, which never build the ``(trials, D)`` matrices.

    Args:
        enrol: ``(trials, D)`` enrolment embeddings.
        test: ``(trials, D)`` test embeddings.
        cohort: ``(M, D)`` cohort embeddings.
        top_n: cohort scores kept per embedding.

    Returns:
        ``(trials,)`` float64 normalised scores.
    """
    enrol, test = _check_matrix("enrol", enrol), _check_matrix("test", test)
    if enrol.shape != test.shape:
        raise ArgumentError(f"enrol {enrol.shape} and test {test.shape} must have the same shape")
    stacked = np.concatenate([enrol, test]).astype(np.float32)
    unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return adaptive_snorm_indexed(unique, inverse[: len(enrol)], inverse[len(enrol) :], cohort, top_n)


def score_trials(
    trials: Sequence,
    table: EmbeddingTable,
    cohort: np.ndarray | EmbeddingTable | None = None,
    top_n: int = DEFAULT_TOP_N,
    source: str = "trials",
) -> np.ndarray:
    """Score a trial list with the embeddings of ``table``.

    Args:
        trials: objects with ``enrol`` and ``test`` keys (``voxmetric.data.trials.Trial``).
        table: embeddings whose ids are the trial keys.
        cohort: ``(M, D)`` cohort for adaptive s-norm; ``None`` returns raw cosine scores.
        top_n: cohort scores kept per embedding.
        source: name of the trial list, quoted in errors.

    Returns:
        ``(trials,)`` float64 scores, in trial order.

    Raises:
        TrialsError: a trial key has no embedding; the message names the first such
            key, the trial's position and side, and the embeddings source.
    """
    trials = list(trials)
    enrol_rows = table.rows([t.enrol for t in trials], lambda k: f"{source}, trial {k + 1} (enrol)")
    test_rows = table.rows([t.test for t in trials], lambda k: f"{source}, trial {k + 1} (test)")
    if cohort is None:
        return cosine_scores_indexed(table.matrix, enrol_rows, test_rows)
    cohort_matrix = cohort.matrix if isinstance(cohort, EmbeddingTable) else cohort
    return adaptive_snorm_indexed(table.matrix, enrol_rows, test_rows, cohort_matrix, top_n)


def speaker_means(
    ids: Sequence[str], embeddings: np.ndarray, speaker_of: Mapping[str, str]
) -> tuple[list[str], np.ndarray]:
    """Mean L2-normalised embedding of each speaker: an s-norm cohort.

    Args:
        ids: ``N`` utterance ids, the rows of ``embeddings``.
        embeddings: ``(N, D)`` utterance embeddings.
        speaker_of: speaker of each id.

    Returns:
        ``(speakers, means)``: sorted speaker labels and their ``(S, D)`` float32 means.
    """
    embeddings = _check_matrix("embeddings", embeddings)
    if len(ids) == 0 or len(ids) != len(embeddings):
        raise VoxmetricError(f"s-norm cohort: {len(ids)} ids for {len(embeddings)} embeddings")
    missing = next((i for i in ids if i not in speaker_of), None)
    if missing is not None:
        raise VoxmetricError(f"utterance '{missing}' has no speaker; cannot build the s-norm cohort")
    speakers, inverse = np.unique(np.array([speaker_of[i] for i in ids], dtype=np.str_), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    sums = np.add.reduceat(l2_normalise(embeddings)[order], starts, axis=0)
    counts = np.diff(np.r_[starts, len(order)])
    return speakers.tolist(), (sums / counts[:, None]).astype(np.float32)
