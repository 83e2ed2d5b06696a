"""The in-memory corpus table every reader produces and every consumer takes.

A corpus is a list of :class:`Utterance` rows (id, path, speaker, duration).
Readers for the on-disk layouts live in :mod:`voxmetric.data.readers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import CorpusError


@dataclass(frozen=True)
class Utterance:
    """One recording of one speaker.

    Attributes:
        uid: unique id; for the VoxCeleb layout the path relative to the ``wav``
            root (``id10001/1zcIwhmdeo4/00001.wav``), as in official trial lists.
        path: absolute path of the audio file.
        speaker: speaker label.
        duration_s: duration in seconds.
    """

    uid: str
    path: str
    speaker: str
    duration_s: float


class Corpus:
    """An ordered table of utterances with speaker-level views.

    Args:
        utterances: rows; ids must be unique.
        root: directory the corpus was read from (used to resolve trial paths).

    Attributes:
        left_out: speakers :meth:`with_min_duration` left out of this corpus: label -> their
            total duration in seconds, in label order (empty for a corpus no filter made).
    """

    def __init__(self, utterances: Iterable[Utterance], root: str | None = None):
        self.utterances: list[Utterance] = list(utterances)
        self.root = root
        self.left_out: dict[str, float] = {}
        self._by_uid = {u.uid: u for u in self.utterances}
        if len(self._by_uid) != len(self.utterances):
            seen: set[str] = set()
            duplicate = next(u.uid for u in self.utterances if u.uid in seen or seen.add(u.uid))
            raise CorpusError(f"{root or 'corpus'}: utterance id '{duplicate}' appears twice")

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __repr__(self) -> str:
        return (
            f"Corpus({len(self)} utterances, {len(self.speakers)} speakers, "
            f"{self.total_duration_s / 3600:.2f} h, root={self.root!r})"
        )

    @property
    def speakers(self) -> list[str]:
        """Sorted unique speaker labels."""
        return sorted({u.speaker for u in self.utterances})

    @property
    def total_duration_s(self) -> float:
        return float(sum(u.duration_s for u in self.utterances))

    def speaker_index(self) -> dict[str, int]:
        """Speaker label -> class index (0..n_speakers-1, in sorted order)."""
        return {speaker: i for i, speaker in enumerate(self.speakers)}

    def by_speaker(self) -> dict[str, list[Utterance]]:
        """Speaker label -> that speaker's utterances, in corpus order."""
        groups: dict[str, list[Utterance]] = {}
        for u in self.utterances:
            groups.setdefault(u.speaker, []).append(u)
        return groups

    def speaker_durations_s(self) -> dict[str, float]:
        """Speaker label -> total audio duration in seconds."""
        totals: dict[str, float] = {}
        for u in self.utterances:
            totals[u.speaker] = totals.get(u.speaker, 0.0) + u.duration_s
        return totals

    def subset(self, speakers: Iterable[str]) -> Corpus:
        """The utterances of the given speakers only."""
        keep = set(speakers)
        return Corpus([u for u in self.utterances if u.speaker in keep], self.root)

    def with_min_duration(self, min_speaker_duration_s: float) -> Corpus:
        """Leave out speakers with less than ``min_speaker_duration_s`` of audio in all; the
        result's :attr:`left_out` names them, with their durations."""
        totals = self.speaker_durations_s()
        kept = self.subset(s for s, total in totals.items() if total >= min_speaker_duration_s)
        kept.left_out = {s: totals[s] for s in sorted(totals) if totals[s] < min_speaker_duration_s}
        return kept

    def get(self, uid: str) -> Utterance:
        """The utterance with id ``uid``."""
        try:
            return self._by_uid[uid]
        except KeyError:
            raise CorpusError(f"{self.root or 'corpus'}: no utterance with id '{uid}'") from None

    def __contains__(self, uid: object) -> bool:
        return uid in self._by_uid


NESTED_SUBSET_SEED = 0
"""Seed of the speaker permutation behind :func:`nested_speakers` (fixed: subsets stay nested)."""


def nested_speakers(speakers: Iterable[str], count: int, seed: int = NESTED_SUBSET_SEED) -> list[str]:
    """The first ``count`` speakers of one fixed random permutation of the sorted speakers.

    The permutation depends only on the sorted speaker list and ``seed``, so the subsets
    of growing ``count`` are nested (25 speakers are among the 50, which are among the
    100...): a learning curve over training speakers adds speakers, never swaps them.

    Raises:
        ConfigError: ``count`` exceeds the number of speakers.
    """
    import numpy as np

    from ..errors import ConfigError

    ordered = sorted(set(speakers))
    if not 1 <= count <= len(ordered):
        raise ConfigError(f"data.num_speakers is {count} but the corpus has {len(ordered)} training speakers")
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    return sorted(ordered[int(i)] for i in permutation[:count])
