"""Trial lists: reading, writing, sampling, and matching them to a corpus.

A trial asks "is the same person speaking in ``enrol`` and ``test``?". Two
on-disk formats exist and both are read and written:

* VoxCeleb: ``LABEL ENROL TEST`` with LABEL ``1`` (same speaker) or ``0``;
  keys are paths relative to the corpus ``wav`` root.
* Kaldi: ``ENROL TEST target|nontarget``; keys are utterance ids.

:func:`read_trials` detects the format of each file from its first line and
also accepts ``target``/``nontarget`` in the first column and ``1``/``0`` in
the last. :func:`make_trials` samples a balanced, seeded list from a corpus.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TrialsError
from ..fileio import atomic_open
from .corpus import Utterance

LABELS = {"1": 1, "0": 0, "target": 1, "nontarget": 0}
"""Label spellings accepted in a trial file, and the label each one means."""

FORMATS = ("voxceleb", "kaldi")


@dataclass(frozen=True)
class Trial:
    """One verification trial.

    Attributes:
        label: 1 when both recordings hold the same speaker, 0 otherwise.
        enrol: key of the enrolment recording, as written in the file (a
            path relative to the corpus ``wav`` root, or an utterance id).
        test: key of the test recording.
    """

    label: int
    enrol: str
    test: str


# ---------------------------------------------------------------- reading


def _parse_label(text: str, where: str) -> int:
    try:
        return LABELS[text.lower()]
    except KeyError:
        raise TrialsError(
            f"{where}: label '{text}' is not one of {', '.join(LABELS)}"
        ) from None


def _detect_format(fields: list[str]) -> str:
    """'voxceleb' when the first field is a label, else 'kaldi'."""
    return "voxceleb" if fields[0].lower() in LABELS else "kaldi"


def _parse_line(fields: list[str], fmt: str, where: str) -> Trial:
    if len(fields) != 3:
        layout = "LABEL ENROL TEST" if fmt == "voxceleb" else "ENROL TEST target|nontarget"
        raise TrialsError(f"{where}: expected 3 fields ({layout}), found {len(fields)}")
    if fmt == "voxceleb":
        return Trial(_parse_label(fields[0], where), fields[1], fields[2])
    return Trial(_parse_label(fields[2], where), fields[0], fields[1])


def read_trials(path: str | os.PathLike) -> list[Trial]:
    """Read a VoxCeleb (``LABEL ENROL TEST``) or Kaldi (``ENROL TEST target``) list.

    The format is detected once per file from its first non-blank line: a
    label in the first field means VoxCeleb, otherwise Kaldi. Blank lines are
    skipped.

    Raises:
        TrialsError: missing file, a folder, not UTF-8 text, a line without exactly
            3 fields, an unknown label, or a list without trials; the message names
            file and line.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise TrialsError(f"{path}: is a directory, not a trial list")
    if not os.path.isfile(path):
        raise TrialsError(f"{path}: no such trial list")
    trials: list[Trial] = []
    fmt = None
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                fmt = fmt or _detect_format(fields)
                trials.append(_parse_line(fields, fmt, f"{path}, line {number}"))
    except UnicodeDecodeError:
        raise TrialsError(f"{path}: not a UTF-8 text trial list (an audio file given as a trial list?)") from None
    except OSError as error:
        raise TrialsError(f"{path}: cannot read trial list ({error.strerror or error})") from None
    if not trials:
        raise TrialsError(f"{path}: trial list holds no trials")
    return trials


# ---------------------------------------------------------------- writing


def _format_line(trial: Trial, fmt: str) -> str:
    if fmt == "voxceleb":
        return f"{trial.label} {trial.enrol} {trial.test}\n"
    return f"{trial.enrol} {trial.test} {'target' if trial.label else 'nontarget'}\n"


def write_trials(path: str | os.PathLike, trials: Sequence[Trial], format: str = "voxceleb") -> None:
    """Write trials atomically in the VoxCeleb or Kaldi format.

    Raises:
        TrialsError: unknown ``format``, or a key holding white space (it
            could not be read back).
    """
    path = os.fspath(path)
    if format not in FORMATS:
        raise TrialsError(f"{path}: unknown trial format '{format}'; use one of {', '.join(FORMATS)}")
    for trial in trials:
        for key in (trial.enrol, trial.test):
            if not key or any(c.isspace() for c in key):
                raise TrialsError(f"{path}: trial key {key!r} is empty or holds white space")
    with atomic_open(path) as f:
        f.writelines(_format_line(trial, format) for trial in trials)


# ---------------------------------------------------------------- sampling


def _target_pair_counts(sizes: np.ndarray) -> np.ndarray:
    return sizes * (sizes - 1) // 2


def _enumerate_pairs(starts: np.ndarray, sizes: np.ndarray, target: bool) -> np.ndarray:
    """All unordered pairs ``(i, j), i < j`` within (target) or across speaker blocks.

    Only called when the caller asks for at least half of them, so the
    result is at most twice the requested list.
    """
    pairs = []
    total = int(starts[-1] + sizes[-1]) if len(sizes) else 0
    for start, size in zip(starts.tolist(), sizes.tolist()):
        stop = start + size
        for i in range(start, stop):
            j = np.arange(i + 1, stop) if target else np.arange(stop, total)
            pairs.append(np.stack([np.full(len(j), i), j], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def _draw_target(rng, starts, sizes, count):
    """``count`` uniform same-speaker pairs (with possible repeats)."""
    pair_counts = _target_pair_counts(sizes)
    speaker = rng.choice(len(sizes), size=count, p=pair_counts / pair_counts.sum())
    a = rng.integers(0, sizes[speaker])
    b = rng.integers(0, sizes[speaker] - 1)
    b = b + (b >= a)  # a second, different member of the same block
    return starts[speaker] + a, starts[speaker] + b


def _draw_nontarget(rng, starts, sizes, block_of, count):
    """``count`` uniform different-speaker pairs (with possible repeats).

    The first item is drawn with weight (N - own block size), the second
    uniformly outside that block: every ordered cross pair is equally likely.
    """
    total = int(sizes.sum())
    weights = (total - sizes[block_of]).astype(np.float64)
    i = rng.choice(total, size=count, p=weights / weights.sum())
    block = block_of[i]
    r = rng.integers(0, total - sizes[block])
    j = r + sizes[block] * (r >= starts[block])
    return i, j


def _sample_pairs(rng, starts, sizes, block_of, count, available, target) -> np.ndarray:
    """``count`` distinct unordered pairs, ``(count, 2)`` with ``i < j``."""
    if count == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if 2 * count >= available:  # dense request: rejection would stall on repeats
        pairs = _enumerate_pairs(starts, sizes, target)
        return pairs[np.sort(rng.choice(len(pairs), size=count, replace=False))]
    chosen: dict[tuple[int, int], None] = {}  # insertion-ordered set: deterministic
    while len(chosen) < count:
        batch = 2 * (count - len(chosen)) + 16
        if target:
            i, j = _draw_target(rng, starts, sizes, batch)
        else:
            i, j = _draw_nontarget(rng, starts, sizes, block_of, batch)
        for pair in zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist()):
            chosen.setdefault(pair)
            if len(chosen) == count:
                break
    return np.array(list(chosen), dtype=np.int64)


def _capped_counts(n_target: int, n_nontarget: int, available_target: int, available_nontarget: int):
    """Apply the capping rule of :func:`make_trials` and warn when it bites."""
    target, nontarget = n_target, n_nontarget
    if target > available_target:
        target = available_target
        nontarget = round(n_nontarget * target / n_target)
    nontarget = min(nontarget, available_nontarget)
    if (target, nontarget) != (n_target, n_nontarget):
        warnings.warn(
            f"asked for {n_target} target / {n_nontarget} non-target trials, only "
            f"{available_target} / {available_nontarget} distinct pairs exist: "
            f"making {target} / {nontarget}",
            stacklevel=3,
        )
    return target, nontarget


def make_trials(
    utterances: Sequence[Utterance],
    n_target: int,
    n_nontarget: int,
    seed: int,
    key: Callable[[Utterance], str] = lambda u: u.uid,
) -> list[Trial]:
    """Sample distinct same-speaker and different-speaker trials, reproducibly.

    Pairs are unordered, never pair an utterance with itself and never repeat;
    each distinct pair of its kind is equally likely. Sparse requests are drawn
    by rejection of repeats (no enumeration of all N^2 pairs: fine for 1e5
    utterances); a request for at least half of the pairs of a kind enumerates
    that kind and draws without replacement.

    Capping rule: when fewer target pairs exist than ``n_target``, all of them
    are used and ``n_nontarget`` is scaled by the same factor (a balanced
    request stays balanced); non-targets are then capped to those that exist.
    A ``UserWarning`` says so.

    Args:
        utterances: the pool; speakers with one utterance only give non-targets.
        n_target: wanted same-speaker trials.
        n_nontarget: wanted different-speaker trials.
        seed: seed of the numpy ``Generator``; same inputs and seed, same list.
        key: what the trial holds for an utterance (default its uid; use
            ``lambda u: relative_path`` for VoxCeleb-style lists).

    Returns:
        Targets and non-targets shuffled together; within a trial, ``enrol``
        comes first in ``utterances``.

    Raises:
        TrialsError: negative counts, duplicate keys, or trials of a kind asked
            for when no such pair exists (no speaker with 2 utterances, or a
            single speaker).
    """
    if n_target < 0 or n_nontarget < 0:
        raise TrialsError(f"trial counts must be >= 0, got n_target={n_target}, n_nontarget={n_nontarget}")
    keys = [key(u) for u in utterances]
    if len(set(keys)) != len(keys):
        raise TrialsError("make_trials: two utterances share the same trial key")
    # Sort by speaker (stable) so each speaker is one contiguous block of indices.
    order = np.array(sorted(range(len(utterances)), key=lambda i: utterances[i].speaker), dtype=np.int64)
    speakers = np.array([utterances[i].speaker for i in order], dtype=object)
    names, starts, sizes = np.unique(speakers, return_index=True, return_counts=True)
    block_of = np.repeat(np.arange(len(sizes)), sizes)
    available_target = int(_target_pair_counts(sizes).sum())
    available_nontarget = len(order) * (len(order) - 1) // 2 - available_target
    if n_target and not available_target:
        raise TrialsError(f"cannot make target trials: no speaker has 2 utterances ({len(names)} speakers)")
    if n_nontarget and not available_nontarget:
        raise TrialsError(f"cannot make non-target trials: {len(names)} speaker(s) only, need 2")
    n_target, n_nontarget = _capped_counts(n_target, n_nontarget, available_target, available_nontarget)

    rng = np.random.default_rng(seed)
    target = _sample_pairs(rng, starts, sizes, block_of, n_target, available_target, True)
    nontarget = _sample_pairs(rng, starts, sizes, block_of, n_nontarget, available_nontarget, False)
    pairs = order[np.concatenate([target, nontarget])]  # back to input indices
    labels = np.r_[np.ones(len(target), int), np.zeros(len(nontarget), int)]
    shuffle = rng.permutation(len(pairs))
    first, second = pairs.min(axis=1), pairs.max(axis=1)
    return [Trial(int(labels[t]), keys[first[t]], keys[second[t]]) for t in shuffle]


# ---------------------------------------------------------------- resolving


# --- trial keys -> audio files --------------------------------------------------------


def trial_root(trials_path: str | os.PathLike, root: str | os.PathLike | None, first_key: str) -> Path:
    """Folder the trial list's keys are relative to.

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


def trial_keys(trials: Sequence[Trial]) -> list[str]:
    """Unique trial keys, in order of first appearance."""
    return list(dict.fromkeys(key for t in trials for key in (t.enrol, t.test)))


def key_paths(keys: Sequence[str], root: Path, trials_path: str | os.PathLike = "trials") -> list[Path]:
    """The audio file of each trial key: ``root / key``; in a Kaldi data dir (``root`` holds
    ``wav.scp``) the file the key's utterance id names there.

    Paths are only read, and followed wherever they lead: symlinks and absolute paths
    silently (data folders are often links to other disks), relative paths climbing out
    of ``root`` through ``..`` with one warning naming how many and the first.

    Raises:
        TrialsError: a key is not in ``wav.scp``, or a file does not exist (the message
            names the list, the first such key and how many there are).
    """
    root = Path(root)
    if (root / "wav.scp").is_file():
        from .kaldi import read_wav_scp, resolve_wav_path

        table = read_wav_scp(str(root / "wav.scp"))
        unknown = [key for key in keys if key not in table]
        if unknown:
            raise TrialsError(f"{trials_path}: trial key '{unknown[0]}' is not an utterance id of "
                              f"{root / 'wav.scp'} ({len(unknown)} of {len(keys)} keys are not)")
        paths = [Path(resolve_wav_path(table[key][0], root)) for key in keys]
    else:
        paths = [root / key for key in keys]
    missing = [key for key, path in zip(keys, paths) if not path.is_file()]
    if missing:
        raise TrialsError(f"{trials_path}: {len(missing)} trial file(s) not found under {root}, "
                          f"e.g. '{missing[0]}'")
    _warn_escaping(keys, paths, root)
    return paths


def _warn_escaping(keys: Sequence[str], paths: list[Path], root: Path) -> None:
    base = os.path.normpath(os.path.abspath(root))
    escaping = [key for key, path in zip(keys, paths)
                if ".." in Path(path).parts
                and os.path.commonpath([base, os.path.normpath(os.path.abspath(path))]) != base]
    if escaping:
        warnings.warn(f"{root}: {len(escaping)} trial path(s) lead outside this folder through '..' "
                      f"(first: {escaping[0]}); reading them anyway", stacklevel=3)
