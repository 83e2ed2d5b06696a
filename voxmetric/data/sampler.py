"""Training batches: P speakers x K random fixed-duration chunks, as an endless stream.

Determinism is the contract the trainer builds on: the content of global batch
number ``i`` depends only on ``(seed, rank, i)`` (one ``numpy`` generator seeded
with ``[seed, rank, i]`` per batch), never on what was drawn before. Hence

- with ``W`` DataLoader workers, worker ``w`` makes batches ``start_batch + w``,
  ``+ W``, ...; the DataLoader takes them round-robin, so the stream is the same
  for any number of workers;
- resuming with ``start_batch=n`` continues a stream exactly where batch ``n`` was;
- under DDP every rank draws its own stream (the rank is part of the seed).
  Speakers are *not* partitioned between ranks: every rank samples from all of
  them, and independent streams already give each speaker the same expected
  share of every rank's batches. ``world_size`` is only checked against ``rank``.

Chunks are read with :func:`voxmetric.audio.read`, which seeks to the segment
and decodes only ``chunk_duration_s`` of audio.
"""

from __future__ import annotations

import signal
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .. import audio
from ..errors import AudioError, ConfigError, CorpusError, VoxmetricError
from .corpus import Corpus

ROUNDING_SLACK_SAMPLES = 4
"""A read this many samples short of a chunk is edge-padded, not tiled: the gap
comes from rounding seconds to samples (and resampling), not from a short file."""


@dataclass(frozen=True)
class _SpeakerFiles:
    """One speaker's utterances as arrays, for weighted draws."""

    speaker: str
    paths: list[str]
    durations_s: np.ndarray  # (files,) float64


class ChunkBatches(IterableDataset):
    """Endless stream of ``(waveforms, labels)`` training batches.

    Each batch holds ``speakers_per_batch`` (P) distinct speakers drawn
    uniformly without replacement and, for each, ``chunks_per_speaker`` (K)
    chunks. A chunk comes from one of the speaker's utterances drawn with
    probability proportional to its duration, starting uniformly in
    ``[0, duration - chunk_duration_s]``. An utterance shorter than the chunk
    is read whole and tiled (repeated end to start) to the chunk length, so
    short recordings still contribute without padding with silence.

    With ``speed_factors`` (speaker augmentation by speed perturbation, Yamamoto et al.,
    Interspeech 2019), every factor ``f`` adds a copy of every speaker, labelled
    ``"SPEAKER@speedF"`` (:func:`perturbed_speakers`): its chunks are read from the same
    utterances, ``f`` times as long, and resampled to the chunk length, so they play ``f``
    times faster with every frequency (pitch, formants) times ``f``: a different voice, a
    different class. The labels are ``speakers`` in that order (originals first).

    A file that turns out unreadable (:class:`~voxmetric.errors.AudioError`)
    is skipped: another chunk of the same speaker is drawn, a warning names
    the file once per process, and ``skipped_reads`` counts it (per process:
    DataLoader workers keep their own count).

    Args:
        corpus: training utterances.
        speakers_per_batch: P.
        chunks_per_speaker: K.
        chunk_duration_s: length of every chunk.
        min_speaker_duration_s: speakers with less audio in all are left out.
        seed: base seed of every batch's generator (non-negative).
        augmentation: ``callable(waveforms (B, T) float32, rng) -> (B, T)``,
            applied per batch after the reads with the batch's generator.
        rank, world_size: DDP process index and count.
        start_batch: global index of the first batch the stream yields.
        sample_rate_hz: sample rate of the chunks.
        speed_factors: speed-perturbed copies of every speaker (positive, not 1).

    Yields:
        ``waveforms``: ``(P * K, samples)`` float32 tensor, speaker-major
        (speaker p's K chunks are rows ``p*K .. p*K + K - 1``);
        ``labels``: ``(P * K,)`` int64 tensor, indices into :attr:`speakers`.

    Attributes:
        speakers: sorted labels of the speakers kept (label i is ``speakers[i]``).
        num_speakers: ``len(speakers)``.
        chunk_samples: samples per chunk.
    """

    def __init__(
        self,
        corpus: Corpus,
        speakers_per_batch: int,
        chunks_per_speaker: int,
        chunk_duration_s: float,
        min_speaker_duration_s: float = 0.0,
        seed: int = 0,
        augmentation=None,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        sample_rate_hz: int = audio.SAMPLE_RATE_HZ,
        speed_factors: tuple[float, ...] = (),
    ):
        super().__init__()
        _check_numbers(speakers_per_batch, chunks_per_speaker, chunk_duration_s, seed, rank, world_size,
                       start_batch, sample_rate_hz)
        kept = corpus.with_min_duration(min_speaker_duration_s)
        speed_factors = check_speed_factors(speed_factors)
        _check_speakers(corpus, kept, speakers_per_batch, chunk_duration_s, min_speaker_duration_s,
                        copies=1 + len(speed_factors))
        by_speaker = kept.by_speaker()
        files = [_speaker_files(s, by_speaker[s]) for s in kept.speakers]
        self.speakers: list[str] = perturbed_speakers(kept.speakers, speed_factors)
        self.num_speakers = len(self.speakers)
        self._files = files * (1 + len(speed_factors))
        self._speeds = [factor for factor in (1.0, *speed_factors) for _ in files]
        self.speakers_per_batch = int(speakers_per_batch)
        self.chunks_per_speaker = int(chunks_per_speaker)
        self.chunk_duration_s = float(chunk_duration_s)
        self.chunk_samples = int(round(chunk_duration_s * sample_rate_hz))
        self.sample_rate_hz = int(sample_rate_hz)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.start_batch = int(start_batch)
        self.augmentation = augmentation
        self.skipped_reads = 0
        self._bad_paths: dict[str, str] = {}

    def __iter__(self):
        worker = get_worker_info()
        worker_id, num_workers = (0, 1) if worker is None else (worker.id, worker.num_workers)
        # Worker w makes every W-th batch; the DataLoader's round-robin over
        # workers then restores the order start_batch, start_batch + 1, ...
        index = self.start_batch + worker_id
        while True:
            yield self.batch(index)
            index += num_workers

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Global batch number ``index`` of this rank's stream.

        Returns:
            ``(waveforms (P*K, samples) float32, labels (P*K,) int64)``.
        """
        rng = np.random.default_rng([self.seed, self.rank, int(index)])
        chosen = rng.choice(self.num_speakers, size=self.speakers_per_batch, replace=False)
        return self._chunks(np.repeat(chosen, self.chunks_per_speaker), rng)

    def _chunks(self, labels: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk per label (at its speaker copy's speed), then the batch's augmentation,
        all drawn from ``rng``: ``(waveforms (len, samples) float32, labels (len,) int64)``."""
        waveforms = np.empty((len(labels), self.chunk_samples), dtype=np.float32)
        for row, speaker in enumerate(labels):
            waveforms[row] = self._draw_chunk(int(speaker), rng, self._speeds[int(speaker)])
        if self.augmentation is not None:
            waveforms = np.asarray(self.augmentation(waveforms, rng), dtype=np.float32)
        return torch.from_numpy(waveforms), torch.from_numpy(labels.astype(np.int64))

    def class_batches(self, chunks_per_class: int):
        """Every class ``chunks_per_class`` times, in label order, as ``(waveforms, labels)``
        batches of at most P x K chunks: what :func:`~voxmetric.training.finetune.imprint_head`
        averages. Drawn as the training chunks are (speed, augmentation), from generators of
        their own (``[seed, 0, index, 1]``), so the training stream is not touched; the
        same on every call and on every DDP rank."""
        if int(chunks_per_class) < 1:
            raise ValueError(f"chunks_per_class must be >= 1, got {chunks_per_class}")
        labels = np.repeat(np.arange(self.num_speakers), int(chunks_per_class))
        size = self.speakers_per_batch * self.chunks_per_speaker
        for index in range(self.class_batch_count(chunks_per_class)):
            rng = np.random.default_rng([self.seed, 0, index, 1])
            yield self._chunks(labels[index * size:(index + 1) * size], rng)

    def class_batch_count(self, chunks_per_class: int) -> int:
        """How many batches :meth:`class_batches` yields (the last one may be short)."""
        size = self.speakers_per_batch * self.chunks_per_speaker
        return -(-self.num_speakers * int(chunks_per_class) // size)

    def _draw_chunk(self, speaker: int, rng: np.random.Generator, speed: float = 1.0) -> np.ndarray:
        """One ``(chunk_samples,)`` chunk of a speaker, skipping unreadable files.

        Every attempt consumes exactly two draws and a failed file is only
        excluded for the rest of *this* chunk, so the result depends on the
        generator and the (fixed) set of bad files, not on which process met
        them first: streams stay identical across worker counts.
        """
        files = self._files[speaker]
        weights_s = files.durations_s.copy()
        for _ in range(len(files.paths)):
            choice = _weighted_index(weights_s, rng.random())
            position = rng.random()
            try:
                return self._read_chunk(files.paths[choice], files.durations_s[choice], position, speed)
            except AudioError as error:
                self._note_bad(files.paths[choice], error)
                weights_s[choice] = 0.0
        raise CorpusError(
            f"speaker '{files.speaker}': none of its {len(files.paths)} files could be read "
            f"(first: {self._bad_paths.get(files.paths[0], f'{files.paths[0]}: unknown error')})"
        )

    def _read_chunk(self, path: str, duration_s: float, position: float, speed: float = 1.0) -> np.ndarray:
        """Read the chunk starting at ``position`` (in [0, 1)) of the usable range; at ``speed``
        != 1, ``speed`` times as much audio, resampled to the chunk (class docstring)."""
        if path in self._bad_paths:
            raise AudioError(self._bad_paths[path])
        source_s = self.chunk_duration_s * speed
        if duration_s <= source_s:
            waveform = audio.read(path, sample_rate_hz=self.sample_rate_hz)
        else:
            start_s = position * (duration_s - source_s)
            length_s = int(np.ceil(self.chunk_samples * speed)) / self.sample_rate_hz
            waveform = audio.read(path, start_s, length_s, sample_rate_hz=self.sample_rate_hz)
        if speed != 1.0:
            # Samples taken at rate * speed, played at rate: speed times faster and higher.
            waveform = audio.resample(waveform, round(self.sample_rate_hz * speed), self.sample_rate_hz)
        return fit_length(waveform, self.chunk_samples)

    def _note_bad(self, path: str, error: AudioError) -> None:
        self.skipped_reads += 1
        if path not in self._bad_paths:
            self._bad_paths[path] = str(error)
            warnings.warn(f"skipping unreadable training file: {error}", stacklevel=3)


def check_speed_factors(factors) -> tuple[float, ...]:
    """Speed-perturbation factors: positive, none equal to 1, no repeats (ConfigError otherwise)."""
    factors = tuple(float(f) for f in factors or ())
    if any(not 0.5 <= f <= 2.0 or f == 1.0 for f in factors) or len(set(factors)) != len(factors):
        raise ConfigError(f"data.speed_perturb must list distinct factors in [0.5, 2] other than 1 "
                          f"(e.g. [0.9, 1.1]), got {list(factors)}")
    return factors


def perturbed_speakers(speakers: list[str], speed_factors) -> list[str]:
    """The class labels of a corpus' ``speakers`` with speed-perturbed copies: the speakers,
    then ``"SPEAKER@speedF"`` for every factor in order (``F`` as ``%g``)."""
    return list(speakers) + [f"{s}@speed{f:g}" for f in speed_factors for s in speakers]


def fit_length(waveform: np.ndarray, samples: int) -> np.ndarray:
    """Trim or extend a ``(n,)`` waveform to ``(samples,)``.

    A few samples short (rounding): repeat the last sample. Shorter: tile the
    waveform end to start (a short utterance fills the chunk with itself).
    """
    if len(waveform) >= samples:
        return waveform[:samples]
    if samples - len(waveform) <= ROUNDING_SLACK_SAMPLES:
        return np.pad(waveform, (0, samples - len(waveform)), mode="edge")
    return np.resize(waveform, samples)


def _weighted_index(weights: np.ndarray, uniform: float) -> int:
    """Index drawn with probability ``weights / weights.sum()`` from one U[0, 1) draw."""
    cumulative = np.cumsum(weights)
    index = int(np.searchsorted(cumulative, uniform * cumulative[-1], side="right"))
    return min(index, len(weights) - 1)


def _speaker_files(speaker: str, utterances) -> _SpeakerFiles:
    durations_s = np.array([u.duration_s for u in utterances], dtype=np.float64)
    if not np.isfinite(durations_s).all() or durations_s.sum() <= 0:
        raise CorpusError(f"speaker '{speaker}': its utterances have no positive duration")
    return _SpeakerFiles(speaker, [u.path for u in utterances], np.maximum(durations_s, 0.0))


def _check_numbers(speakers_per_batch, chunks_per_speaker, chunk_duration_s, seed, rank, world_size,
                   start_batch, sample_rate_hz) -> None:
    if speakers_per_batch < 1:
        raise ConfigError(f"speakers_per_batch must be >= 1, got {speakers_per_batch}")
    if chunks_per_speaker < 1:
        raise ConfigError(f"chunks_per_speaker must be >= 1, got {chunks_per_speaker}")
    if not chunk_duration_s > 0:
        raise ConfigError(f"chunk_duration_s must be positive, got {chunk_duration_s}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if start_batch < 0:
        raise ConfigError(f"start_batch must be >= 0, got {start_batch}")
    if sample_rate_hz <= 0:
        raise ConfigError(f"sample_rate_hz must be positive, got {sample_rate_hz}")


def _check_speakers(corpus: Corpus, kept: Corpus, speakers_per_batch: int, chunk_duration_s: float,
                    min_speaker_duration_s: float, copies: int = 1) -> None:
    if len(kept) == 0:
        raise ConfigError(
            f"min_speaker_duration_s={min_speaker_duration_s} leaves no speaker "
            f"(corpus has {len(corpus.speakers)} speakers, {len(corpus)} utterances)"
        )
    count = len(kept.speakers) * copies
    if speakers_per_batch > count:
        raise ConfigError(
            f"speakers_per_batch={speakers_per_batch} is more than the {count} speakers "
            f"available (after min_speaker_duration_s={min_speaker_duration_s}"
            + (", speed-perturbed copies included" if copies > 1 else "") + ")"
        )
    longest_s = max(u.duration_s for u in kept)
    if chunk_duration_s > longest_s:
        raise ConfigError(
            f"chunk_duration_s={chunk_duration_s} is longer than every utterance "
            f"(longest {longest_s:.2f} s); every chunk would be a tiled copy"
        )


def _one_thread_per_worker(worker_id: int) -> None:
    # Workers only read and augment audio; N workers x all-core torch pools
    # would oversubscribe the CPUs the main process needs.
    torch.set_num_threads(1)
    # A SIGTERM to the whole process group (a job scheduler, `kill -- -PGID`) is for the
    # trainer to handle (save a checkpoint, then shut the workers down), not for workers
    # to die of first: the trainer would see a dead worker instead of a stop request.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def next_batch(batches):
    """``next(batches)``, where a voxmetric error raised in a DataLoader worker comes out as the
    worker raised it (one line), not inside torch's "Caught ... in DataLoader worker process 0.
    Original Traceback ..." text."""
    try:
        return next(batches)
    except VoxmetricError as error:
        text = str(error)
        if not text.startswith("Caught "):
            raise
        prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
        original = next((line[len(prefix):] for line in reversed(text.splitlines()) if line.startswith(prefix)), None)
        if original is None:
            raise
        try:
            clean = type(error)(original)
        except TypeError:  # an error class with other constructor arguments
            clean = VoxmetricError(original)
        raise clean from None


def close_loader(batches) -> None:
    """Stop the worker processes of a DataLoader iterator, whatever state it is in.

    The workers ignore SIGTERM (:func:`_one_thread_per_worker`), so torch's own shutdown, or the
    interpreter's at exit, cannot stop one that is still running (after a worker's error, say)
    and would wait for it for ever: after torch's shutdown, any worker still alive is killed.
    """
    workers = list(getattr(batches, "_workers", None) or [])
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=10)


def make_loader(
    dataset: ChunkBatches,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A DataLoader over ready-made batches (``batch_size=None``: no re-collation).

    Workers run one torch thread each. ``prefetch_factor`` (batches queued per
    worker) only applies with ``num_workers > 0``.
    """
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        worker_init_fn=_one_thread_per_worker if num_workers > 0 else None,
    )
