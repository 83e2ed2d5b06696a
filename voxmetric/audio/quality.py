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
* ``high_band_db``: energy above ``high_band_hz`` (5 kHz) relative to all the energy of
  the speech frames, in dB. Wide-band speech holds some energy up there (fricatives,
  breath): -35 to -7 dB on the 79 real recordings of ``../shared/data/real``, 5th
  percentile -30 dB. Telephone-band audio (cut at 3.4-4 kHz, then stored at 16 kHz)
  holds next to nothing: the same recordings low-passed by an 8th-order Butterworth at
  3.4 kHz measure -55 dB or less (at 4 kHz: -40 dB or less, 95 % below -43 dB). Below
  ``MIN_HIGH_BAND_DB`` (-40 dB) the report gives the same warning as a source recorded
  below 16 kHz. The band is measured above 5 kHz, not right at the 4 kHz cut, because a
  real low-pass leaks some energy just above its cut-off and speech content varies too
  much there to tell the two apart.

All of these are measured after the VAD's high-pass (:func:`voxmetric.audio.vad.highpass`:
70 Hz, removes DC offsets and mains hum), which :func:`load_speech` also applies to the
waveform it returns for embedding.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import audio
from .io import SAMPLE_RATE_HZ
from ..errors import NoSpeechError, VoxmetricError
from .vad import (DEFAULT_CONFIG, FrameFeatures, Segment, VadConfig, frame_features, highpass, segments_from_features,
                  speech_duration_s, trim_silence, true_runs)

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
MIN_HIGH_BAND_DB = -40.0
"""Less energy than this above 5 kHz (relative to all, speech frames) gives the band-limited warning."""
_CHUNK = 1 << 20


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
    high_band_db: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (the ``--json`` output)."""
        return asdict(self)


def clipping_ratio(waveform) -> float:
    """Fraction of ``(samples,)`` samples that are clipped (module docstring).

    Works through the waveform in chunks without a float64 copy (an hour of audio is
    230 MB as float32); flat runs crossing a chunk boundary are found whole.
    """
    waveform = np.asarray(waveform)
    if waveform.dtype != np.float64:
        waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.size == 0:
        return 0.0
    top, bottom = waveform.max(), waveform.min()
    at_level = sum(int(np.count_nonzero(np.abs(waveform[i:i + _CHUNK]) >= CLIPPING_LEVEL))
                   for i in range(0, waveform.size, _CHUNK))
    if max(abs(top), abs(bottom)) < MIN_FLAT_PEAK:
        return at_level / waveform.size
    # Samples at an extreme (usually few): runs of >= MIN_FLAT_RUN consecutive ones count too.
    extreme = np.flatnonzero((waveform == top) | (waveform == bottom))
    clipped = np.zeros(0, dtype=np.int64)
    if extreme.size:
        mask = np.zeros(extreme[-1] - extreme[0] + 1, dtype=bool)
        mask[extreme - extreme[0]] = True
        runs = true_runs(mask)
        long_runs = runs[runs[:, 1] - runs[:, 0] >= MIN_FLAT_RUN]
        if long_runs.size:
            clipped = np.concatenate([np.arange(a, b) for a, b in long_runs]) + extreme[0]
    extra = int(np.count_nonzero(np.abs(waveform[clipped]) < CLIPPING_LEVEL)) if clipped.size else 0
    return (at_level + extra) / waveform.size


def _frame_in_segments(starts_s: np.ndarray, ends_s: np.ndarray, segments: list[Segment], guard_s: float):
    """``(frames,)`` bool: the frame ``[start, end)`` overlaps a segment widened by ``guard_s``."""
    overlap = np.zeros(starts_s.shape, dtype=bool)
    for start, end in segments:
        overlap |= (starts_s < end + guard_s) & (ends_s > start - guard_s)
    return overlap


def estimate_snr_db(waveform, segments: list[Segment], sample_rate_hz: int = SAMPLE_RATE_HZ,
                    config: VadConfig = DEFAULT_CONFIG, features: FrameFeatures | None = None) -> float:
    """SNR in dB from speech-frame and non-speech-frame powers (module docstring).

    Args:
        waveform: ``(samples,)`` mono waveform (unused when ``features`` are given).
        segments: its speech segments (non-empty).
        sample_rate_hz: its sample rate.
        config: the framing (``frame_s``, ``hop_s``) and high-pass of the VAD.
        features: the waveform's :func:`~voxmetric.audio.vad.frame_features` when
            computed already (the VAD's): not computed twice.
    """
    if features is None:
        features = frame_features(waveform, sample_rate_hz, config)
    power = 10 ** (features.energy_dbfs / 10)
    if power.size == 0 or not segments:
        return float("nan")
    speech, noise = _speech_and_noise_frames(features, segments, sample_rate_hz)
    if noise.sum() >= MIN_NOISE_FRAMES:
        noise_power = float(np.median(power[noise]))
    else:
        noise_power = float(np.percentile(power, NOISE_FLOOR_PERCENTILE))
    signal_power = float(power[speech].mean()) - noise_power
    if signal_power <= 0:
        return -MAX_SNR_DB
    return float(np.clip(10 * math.log10(signal_power / max(noise_power, 1e-30)), -MAX_SNR_DB, MAX_SNR_DB))


def _speech_and_noise_frames(features: FrameFeatures, segments: list[Segment], sample_rate_hz: int):
    count = features.energy_dbfs.size
    starts_s = np.arange(count) * features.hop_length / sample_rate_hz
    ends_s = starts_s + features.frame_length / sample_rate_hz
    speech = _frame_in_segments(starts_s, ends_s, segments, 0.0)
    noise = ~_frame_in_segments(starts_s, ends_s, segments, NOISE_GUARD_S)
    if not speech.any():  # segments shorter than a frame
        speech = np.ones_like(speech)
    return speech, noise


def high_band_db(features: FrameFeatures, segments: list[Segment], sample_rate_hz: int = SAMPLE_RATE_HZ) -> float | None:
    """Energy above ``high_band_hz`` over all energy of the speech frames, in dB (module docstring).

    ``None`` when there are no frames, or the rate has no band above ``high_band_hz``.
    """
    if features.energy_dbfs.size == 0 or features.high_band_ratio is None or not segments:
        return None
    speech, _ = _speech_and_noise_frames(features, segments, sample_rate_hz)
    power = 10 ** (features.energy_dbfs[speech] / 10)
    total = float(power.sum())
    if total <= 0:
        return None
    ratio = float(np.einsum("i,i->", power, features.high_band_ratio[speech].astype(np.float64))) / total
    return float(10 * math.log10(max(ratio, 1e-12)))


def _warnings(speech_s: float, snr_db: float, clipped: float, original_hz: int,
              high_db: float | None = None) -> list[str]:
    warnings = []
    if speech_s < MIN_SPEECH_DURATION_S:
        warnings.append(f"only {speech_s:.2f} s of speech (at least {MIN_SPEECH_DURATION_S} s recommended): "
                        f"the score is unreliable; use a longer recording")
    if snr_db < MIN_SNR_DB:
        shown = round(snr_db, 1) + 0.0  # + 0.0: -0.04 dB is "0.0 dB", never "-0.0 dB"
        warnings.append(f"very noisy recording (estimated SNR {shown:.1f} dB, below {MIN_SNR_DB:g} dB): "
                        f"the score is unreliable")
    if clipped > MAX_CLIPPING_RATIO:
        warnings.append(f"{100 * clipped:.1f}% of samples are clipped (more than {100 * MAX_CLIPPING_RATIO:g}%): "
                        f"the recording level was too high and the voice is distorted")
    if original_hz < MIN_SAMPLE_RATE_HZ:
        warnings.append(f"recorded at {original_hz} Hz (below {MIN_SAMPLE_RATE_HZ} Hz, e.g. telephone audio): "
                        f"the model was trained on wide-band speech and the score may be biased")
    elif high_db is not None and high_db < MIN_HIGH_BAND_DB:
        warnings.append(f"band-limited audio (energy above 5 kHz {-high_db:.0f} dB below the total, e.g. telephone "
                        f"audio stored at {original_hz} Hz): the model was trained on wide-band speech and the "
                        f"score may be biased")
    return warnings



def assess(waveform, original_sample_rate_hz: int, segments: list[Segment] | None = None,
           sample_rate_hz: int = SAMPLE_RATE_HZ, path: str | os.PathLike | None = None,
           config: VadConfig = DEFAULT_CONFIG, clipping: float | None = None,
           features: FrameFeatures | None = None) -> QualityReport:
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
        features: the waveform's :func:`~voxmetric.audio.vad.frame_features` (with
            ``config``) when computed already.

    Raises:
        NoSpeechError: no speech segment.
    """
    if features is None:
        features = frame_features(waveform, sample_rate_hz, config)
    num_samples = np.asarray(waveform).shape[0]
    if segments is None:
        segments = segments_from_features(features, num_samples, sample_rate_hz, config)
    if not segments:
        source = os.fspath(path) if path is not None else "input array"
        raise NoSpeechError(f"{source}: no speech found in {num_samples / sample_rate_hz:.2f} s of audio (silence, "
                            f"steady noise or hum?); nothing to embed")
    speech_s = speech_duration_s(segments)
    snr_db = estimate_snr_db(waveform, segments, sample_rate_hz, config, features)
    clipped = clipping_ratio(waveform) if clipping is None else float(clipping)
    original = int(original_sample_rate_hz)
    high_db = high_band_db(features, segments, sample_rate_hz)
    return QualityReport(speech_s, snr_db, clipped, original,
                         _warnings(speech_s, snr_db, clipped, original, high_db), high_db)


def load_speech(item, sample_rate_hz: int | None = None, vad: bool = True, config: VadConfig = DEFAULT_CONFIG,
                margin_s: float = 0.1) -> tuple[np.ndarray, QualityReport]:
    """Read a file (or take an array), assess it and keep only its speech: the input step of
    ``verify`` / ``enroll`` / ``identify``.

    The waveform is high-passed (``config.highpass_hz``, 70 Hz: DC offset and hum
    removed, :func:`voxmetric.audio.vad.highpass`) before the VAD and the SNR estimate,
    and the waveform returned for embedding is that high-passed one. The VAD features
    are computed once and serve the VAD, the SNR and the band-limit measurement.

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
    owned = False
    if isinstance(item, (str, os.PathLike)):
        if sample_rate_hz is not None:
            raise ValueError("sample_rate_hz is for arrays; a file's rate is read from its header")
        path = os.fspath(item)
        original_hz = audio.info(path).sample_rate_hz
        native = audio.read(path, sample_rate_hz=original_hz)
        owned = True
    else:
        path, original_hz = None, audio.io.array_rate(sample_rate_hz)
        native = np.asarray(item, dtype=np.float32)
        if native.ndim != 1:
            raise ValueError(f"expected a (samples,) mono array, got shape {native.shape}")
    clipping = clipping_ratio(native)
    waveform = audio.resample(native, original_hz, SAMPLE_RATE_HZ)
    owned = owned or waveform is not native
    del native
    # Filter in place when the array is ours (a file just read, or a resampled copy): no second hour of audio.
    waveform = highpass(waveform, SAMPLE_RATE_HZ, config.highpass_hz, out=waveform if owned else None)
    config = config.without_highpass()
    features = frame_features(waveform, SAMPLE_RATE_HZ, config)
    if vad:
        segments = segments_from_features(features, waveform.shape[0], SAMPLE_RATE_HZ, config)
    else:
        segments = [(0.0, waveform.shape[0] / SAMPLE_RATE_HZ)]
    report = assess(waveform, original_hz, segments, SAMPLE_RATE_HZ, path, config, clipping, features)
    if vad:
        waveform = trim_silence(waveform, SAMPLE_RATE_HZ, margin_s, segments)
    return waveform, report
