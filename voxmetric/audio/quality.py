"""Input quality: speech duration, SNR, clipping and source sample rate, with user warnings.

A verification score is only as good as its inputs: a second of speech, a clip buried
in noise, a clipped recording or a narrow-band (8 kHz telephone) source give scores the
model is not calibrated for. :func:`assess` measures these and attaches warnings a user
understands; a clip with no speech at all is a :class:`NoSpeechError`, not a score.

Measurements (all on the mono waveform):

* ``speech_duration_s``: total length of the VAD's speech segments (:mod:`voxmetric.vad`).
* ``snr_db``: ``10 log10((P_speech - P_noise) / P_noise)``, where ``P_speech`` is the mean
  power of the frames inside speech segments (signal plus noise, hence the subtraction)
  and ``P_noise`` the median power of the frames entirely outside the segments widened by
  ``NOISE_GUARD_S`` (so speech onsets and decays do not count as noise; the median
  ignores a stray click). When fewer than ``MIN_NOISE_FRAMES`` such frames exist (speech
  from edge to edge), ``P_noise`` is the ``NOISE_FLOOR_PERCENTILE`` (5th) percentile of
  all frame powers: the quietest moments between syllables, which over-estimates the
  noise, so the SNR is then a lower bound. Clipped to ``[-MAX_SNR_DB, MAX_SNR_DB]``
  (digital silence between words would otherwise give an infinite SNR).
* ``clipping_ratio``: fraction of samples that are clipped: at ``|x| >= CLIPPING_LEVEL``
  (0.999 of full scale), or in a run of at least ``MIN_FLAT_RUN`` equal samples at the
  waveform's maximum or minimum (a recording clipped and then scaled down has flat tops
  below full scale; a natural waveform almost never repeats its extreme value three
  times). Measured at the source sample rate: resampling smears flat tops.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import audio
from .io import SAMPLE_RATE_HZ
from ..errors import NoSpeechError, VoxmetricError
from .vad import (DEFAULT_CONFIG, Segment, VadConfig, frame_features, speech_duration_s, speech_segments,
                  trim_silence, true_runs)

MIN_SPEECH_DURATION_S = 1.5
"""Less speech than this (after VAD) gives a warning: embeddings of short clips are unreliable."""
MIN_SNR_DB = 5.0
"""A lower estimated SNR gives a warning."""
MAX_CLIPPING_RATIO = 0.01
"""A larger fraction of clipped samples gives a warning."""
MIN_SAMPLE_RATE_HZ = 16_000
"""A source recorded below this rate gives a warning (upsampling cannot restore the missing band)."""

CLIPPING_LEVEL = 0.999
"""Samples at or above this magnitude (fraction of full scale) count as clipped."""
MIN_FLAT_RUN = 3
"""Runs of at least this many equal samples at the waveform's extreme count as clipped."""
MIN_FLAT_PEAK = 0.1
"""Flat runs are only looked for when the peak reaches this level (near-silence is flat)."""
NOISE_GUARD_S = 0.05
"""Frames closer than this to a speech segment are not used as noise."""
MIN_NOISE_FRAMES = 10
"""Fewer non-speech frames than this: the noise power comes from the percentile floor."""
NOISE_FLOOR_PERCENTILE = 5.0
"""Percentile of frame powers used as the noise power when there are no non-speech frames."""
MAX_SNR_DB = 100.0
"""SNR estimates are clipped to +-this."""


@dataclass(frozen=True)
class QualityReport:
    """What :func:`assess` measured (module docstring) and the warnings it raised.

    ``sample_rate_hz`` is the source's original rate, before resampling to 16 kHz.
    """

    speech_duration_s: float
    snr_db: float
    clipping_ratio: float
    sample_rate_hz: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form (the ``--json`` output)."""
        return asdict(self)


def clipping_ratio(waveform) -> float:
    """Fraction of ``(samples,)`` samples that are clipped (module docstring)."""
    waveform = np.asarray(waveform, dtype=np.float64)
    if waveform.size == 0:
        return 0.0
    clipped = np.abs(waveform) >= CLIPPING_LEVEL
    if np.abs(waveform).max() >= MIN_FLAT_PEAK:
        at_extreme = (waveform == waveform.max()) | (waveform == waveform.min())
        for start, stop in true_runs(at_extreme):
            if stop - start >= MIN_FLAT_RUN:
                clipped[start:stop] = True
    return float(clipped.mean())


def _frame_in_segments(starts_s: np.ndarray, ends_s: np.ndarray, segments: list[Segment], guard_s: float):
    """``(frames,)`` bool: the frame ``[start, end)`` overlaps a segment widened by ``guard_s``."""
    overlap = np.zeros(starts_s.shape, dtype=bool)
    for start, end in segments:
        overlap |= (starts_s < end + guard_s) & (ends_s > start - guard_s)
    return overlap


def estimate_snr_db(waveform, segments: list[Segment], sample_rate_hz: int = SAMPLE_RATE_HZ,
                    config: VadConfig = DEFAULT_CONFIG) -> float:
    """SNR in dB from speech-frame and non-speech-frame powers (module docstring).

    Args:
        waveform: ``(samples,)`` mono waveform.
        segments: its speech segments (non-empty).
        sample_rate_hz: its sample rate.
        config: the framing (``frame_s``, ``hop_s``) of the VAD.
    """
    features = frame_features(waveform, sample_rate_hz, config)
    power = 10 ** (features.energy_dbfs / 10)
    if power.size == 0 or not segments:
        return float("nan")
    starts_s = np.arange(power.size) * features.hop_length / sample_rate_hz
    ends_s = starts_s + features.frame_length / sample_rate_hz
    speech = _frame_in_segments(starts_s, ends_s, segments, 0.0)
    noise = ~_frame_in_segments(starts_s, ends_s, segments, NOISE_GUARD_S)
    if not speech.any():  # segments shorter than a frame
        speech = np.ones_like(speech)
    if noise.sum() >= MIN_NOISE_FRAMES:
        noise_power = float(np.median(power[noise]))
    else:
        noise_power = float(np.percentile(power, NOISE_FLOOR_PERCENTILE))
    signal_power = float(power[speech].mean()) - noise_power
    if signal_power <= 0:
        return -MAX_SNR_DB
    return float(np.clip(10 * math.log10(signal_power / max(noise_power, 1e-30)), -MAX_SNR_DB, MAX_SNR_DB))


def _warnings(speech_s: float, snr_db: float, clipped: float, original_hz: int) -> list[str]:
    warnings = []
    if speech_s < MIN_SPEECH_DURATION_S:
        warnings.append(f"only {speech_s:.2f} s of speech (at least {MIN_SPEECH_DURATION_S} s recommended): "
                        f"the score is unreliable; use a longer recording")
    if snr_db < MIN_SNR_DB:
        warnings.append(f"very noisy recording (estimated SNR {snr_db:.1f} dB, below {MIN_SNR_DB:g} dB): "
                        f"the score is unreliable")
    if clipped > MAX_CLIPPING_RATIO:
        warnings.append(f"{100 * clipped:.1f}% of samples are clipped (more than {100 * MAX_CLIPPING_RATIO:g}%): "
                        f"the recording level was too high and the voice is distorted")
    if original_hz < MIN_SAMPLE_RATE_HZ:
        warnings.append(f"recorded at {original_hz} Hz (below {MIN_SAMPLE_RATE_HZ} Hz, e.g. telephone audio): "
                        f"the model was trained on wide-band speech and the score may be biased")
    return warnings


def assess(waveform, original_sample_rate_hz: int, segments: list[Segment] | None = None,
           sample_rate_hz: int = SAMPLE_RATE_HZ, path: str | os.PathLike | None = None,
           config: VadConfig = DEFAULT_CONFIG, clipping: float | None = None) -> QualityReport:
    """Quality report of a recording.

    Args:
        waveform: ``(samples,)`` mono waveform at ``sample_rate_hz``.
        original_sample_rate_hz: the rate the source was recorded at (reported, and
            warned about below ``MIN_SAMPLE_RATE_HZ``).
        segments: speech segments; computed with :func:`voxmetric.vad.speech_segments`
            when ``None``.
        sample_rate_hz: rate of ``waveform``.
        path: the source file, named in errors.
        config: VAD parameters.
        clipping: the clipping ratio when measured elsewhere (at the source rate, see
            :func:`load_speech`); measured on ``waveform`` when ``None``.

    Raises:
        NoSpeechError: no speech segment.
    """
    if segments is None:
        segments = speech_segments(waveform, sample_rate_hz, config)
    if not segments:
        source = os.fspath(path) if path is not None else "input"
        duration = np.asarray(waveform).shape[0] / sample_rate_hz
        raise NoSpeechError(f"{source}: no speech found in {duration:.2f} s of audio (silence, steady noise or "
                            f"hum?); nothing to embed")
    speech_s = speech_duration_s(segments)
    snr_db = estimate_snr_db(waveform, segments, sample_rate_hz, config)
    clipped = clipping_ratio(waveform) if clipping is None else float(clipping)
    original = int(original_sample_rate_hz)
    return QualityReport(speech_s, snr_db, clipped, original, _warnings(speech_s, snr_db, clipped, original))


def load_speech(item, sample_rate_hz: int | None = None, vad: bool = True, config: VadConfig = DEFAULT_CONFIG,
                margin_s: float = 0.1) -> tuple[np.ndarray, QualityReport]:
    """Read a file (or take an array), assess it and keep only its speech: the input step of
    ``verify`` / ``enroll`` / ``identify``.

    Args:
        item: an audio file path, or a ``(samples,)`` mono float array.
        sample_rate_hz: the array's rate (default 16000); must be ``None`` for a file.
        vad: trim non-speech (:func:`voxmetric.vad.trim_silence`). ``False`` keeps the
            whole recording and treats all of it as speech (no :class:`NoSpeechError`;
            the SNR then uses the percentile noise floor).
        config: VAD parameters.
        margin_s: kept around each speech segment.

    Returns:
        ``(waveform, report)``: the ``(samples,)`` float32 16 kHz waveform to embed and
        its :class:`QualityReport`.

    Raises:
        NoSpeechError: ``vad`` is on and the recording holds no speech.
        AudioError: the file cannot be read.
    """
    if isinstance(item, (str, os.PathLike)):
        if sample_rate_hz is not None:
            raise ValueError("sample_rate_hz is for arrays; a file's rate is read from its header")
        path = os.fspath(item)
        original_hz = audio.info(path).sample_rate_hz
        native = audio.read(path, sample_rate_hz=original_hz)
    else:
        path, original_hz = None, int(sample_rate_hz or SAMPLE_RATE_HZ)
        native = np.asarray(item, dtype=np.float32)
        if native.ndim != 1:
            raise ValueError(f"expected a (samples,) mono array, got shape {native.shape}")
    clipping = clipping_ratio(native)
    waveform = audio.resample(native, original_hz, SAMPLE_RATE_HZ)
    if vad:
        segments = speech_segments(waveform, SAMPLE_RATE_HZ, config)
    else:
        segments = [(0.0, waveform.shape[0] / SAMPLE_RATE_HZ)]
    report = assess(waveform, original_hz, segments, SAMPLE_RATE_HZ, path, config, clipping)
    if vad:
        waveform = trim_silence(waveform, SAMPLE_RATE_HZ, margin_s, segments)
    return waveform, report
