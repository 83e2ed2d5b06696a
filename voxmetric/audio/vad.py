"""Speech activity detection: an energy + spectral VAD in numpy.

Why not a neural VAD: verification only needs the long non-speech stretches
(leading / trailing silence, pauses, a hum before the talker starts) removed before
embedding; a few tens of milliseconds at the edges do not change an embedding. A
rule-based detector does that with no weights to ship, no extra dependency, the same
answer on every machine, and a cost far below the embedding network's. It is not
meant for diarisation or for speech buried in babble.

The detector works on short frames (``frame_s = 25 ms`` every ``hop_s = 10 ms``, the
usual speech-analysis framing) and calls a frame speech when all three hold:

1. **Energy above an adaptive noise floor.** Frame energy in dBFS
   (``10 log10(mean(x^2))``). The floor is the ``floor_percentile`` (10th) percentile
   of the file's frame energies: recordings hold pauses, so the quietest tenth of the
   frames is background. The threshold is ``floor + margin`` where the margin is half
   the spread between the floor and the ``peak_percentile`` (90th) percentile, clipped
   to ``[min_margin_db, max_margin_db]`` = [3, 12] dB: 12 dB above the floor in clean
   recordings, less in noisy ones (speech at 5 dB SNR raises a frame only ~6 dB above
   the floor), and never below 3 dB, so steady noise (which varies by well under
   1 dB frame to frame) never passes. Frames quieter than ``min_energy_dbfs``
   (-60 dBFS) are never speech, whatever the floor (digital silence, faint dither),
   unless the recording as a whole is quiet: the bound is then ``quiet_span_db`` (40 dB)
   below the peak percentile, so that a recording played 30 dB quieter (speech peaks
   near -50 dBFS) gives the same segments as the original.
   Limitation: a clip that is speech from edge to edge has no pauses for the floor, so
   the quietest syllables set it and the weakest stretches can be dropped (harmless for
   an embedding, which only needs most of the speech).
2. **Energy in the speech band.** At least ``min_band_ratio`` (5 %) of the frame's
   energy lies in ``band_hz`` = 300-4000 Hz (formants and most voiced energy). The
   bound is low on purpose: nasals and close vowels (/m/, /u/, F1 below 300 Hz) put
   most of their energy under 300 Hz, and on the project's real recordings 30 % of
   loud frames hold less than 27 % in the band, but only ~3 % less than 5 %. Mains hum
   (50/60 Hz and harmonics) and rumble hold ~2 % and fail.
3. **Not noise-like.** Spectral flatness (geometric over arithmetic mean of the power
   spectrum, in the same band) at most ``max_flatness`` (0.7; 99 % of loud frames of
   real speech, fricatives included, are below 0.67). The spectrum is averaged
   over ``flatness_context_frames`` (5) neighbouring frames first: a single frame's
   periodogram of white noise has a flatness of only ``exp(-Euler gamma) = 0.56``
   (chi-square spread), averaging 5 frames lifts it to ~0.89, while the median frame of
   speech is near 0.07. This rejects bursts of broadband noise (a fan, a door, wind).

The frame decisions are then smoothed (hangover): pauses shorter than
``min_silence_s`` (0.3 s) are bridged, so unvoiced consonants and short gaps between
words stay inside a segment; speech runs shorter than ``min_speech_s`` (0.15 s) are
dropped as clicks. Segment edges are placed at the centre of the first / last speech
frame plus or minus half a hop, so they are accurate to about one hop (10 ms).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace

import numpy as np
import scipy.fft
from scipy.ndimage import uniform_filter1d
from scipy.signal import butter, sosfilt, sosfilt_zi

from .io import SAMPLE_RATE_HZ
from ..errors import ConfigError

Segment = tuple[float, float]
"""``(start_s, end_s)`` of a speech region, in seconds from the start of the waveform."""


@dataclass(frozen=True)
class VadConfig:
    """Parameters of the VAD; the defaults are documented in the module docstring."""

    frame_s: float = 0.025
    hop_s: float = 0.010
    floor_percentile: float = 10.0
    peak_percentile: float = 90.0
    min_margin_db: float = 3.0
    max_margin_db: float = 12.0
    min_energy_dbfs: float = -60.0
    quiet_span_db: float = 40.0
    band_hz: tuple[float, float] = (300.0, 4000.0)
    min_band_ratio: float = 0.05
    max_flatness: float = 0.7
    flatness_context_frames: int = 5
    min_speech_s: float = 0.15
    min_silence_s: float = 0.3
    highpass_hz: float | None = 70.0
    high_band_hz: float = 5000.0

    def __post_init__(self):
        for name in ("frame_s", "hop_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"VAD {name} must be positive, got {getattr(self, name)}")
        if self.hop_s > self.frame_s:
            raise ConfigError(f"VAD hop_s ({self.hop_s}) must not exceed frame_s ({self.frame_s})")
        if not 0 <= self.floor_percentile < self.peak_percentile <= 100:
            raise ConfigError(f"VAD percentiles must satisfy 0 <= floor_percentile < peak_percentile <= 100, "
                              f"got {self.floor_percentile} and {self.peak_percentile}")
        if not 0 <= self.min_margin_db <= self.max_margin_db:
            raise ConfigError(f"VAD margins must satisfy 0 <= min_margin_db <= max_margin_db, "
                              f"got {self.min_margin_db} and {self.max_margin_db}")
        low, high = self.band_hz
        if not 0 <= low < high:
            raise ConfigError(f"VAD band_hz must be (low, high) with 0 <= low < high, got {self.band_hz}")
        if not 0 <= self.min_band_ratio <= 1 or not 0 < self.max_flatness <= 1:
            raise ConfigError(f"VAD min_band_ratio must be in [0, 1] and max_flatness in (0, 1], "
                              f"got {self.min_band_ratio} and {self.max_flatness}")
        if self.flatness_context_frames < 1:
            raise ConfigError(f"VAD flatness_context_frames must be at least 1, got {self.flatness_context_frames}")
        if self.min_speech_s < 0 or self.min_silence_s < 0:
            raise ConfigError(f"VAD min_speech_s and min_silence_s must be >= 0, "
                              f"got {self.min_speech_s} and {self.min_silence_s}")
        if self.highpass_hz is not None and not 0 < self.highpass_hz < 1000:
            raise ConfigError(f"VAD highpass_hz must be in (0, 1000) Hz or None, got {self.highpass_hz}")
        if not self.quiet_span_db >= 0:
            raise ConfigError(f"VAD quiet_span_db must be >= 0, got {self.quiet_span_db}")
        if not self.high_band_hz > 0:
            raise ConfigError(f"VAD high_band_hz must be positive, got {self.high_band_hz}")

    def without_highpass(self) -> "VadConfig":
        """The same settings for a waveform that is high-passed already."""
        return replace(self, highpass_hz=None)

    @classmethod
    def from_dict(cls, data: dict) -> "VadConfig":
        """From a config mapping; unknown keys fail (naming the allowed ones)."""
        allowed = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"unknown VAD setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        data = dict(data)
        if "band_hz" in data:
            data["band_hz"] = tuple(data["band_hz"])
        return cls(**data)


DEFAULT_CONFIG = VadConfig()

HIGHPASS_ORDER = 4
"""Order of the Butterworth high-pass (module docstring)."""
BLOCK_FRAMES = 4096
"""Frames whose features are computed at once (about 41 s at the default hop)."""
_FILTER_BLOCK = 1 << 18


@functools.lru_cache(maxsize=16)
def highpass_sos(sample_rate_hz: int = SAMPLE_RATE_HZ, cutoff_hz: float = 70.0,
                 order: int = HIGHPASS_ORDER) -> np.ndarray:
    """``(sections, 6)`` float64 second-order sections of the Butterworth high-pass."""
    sos = butter(order, float(cutoff_hz), btype="highpass", fs=float(sample_rate_hz), output="sos")
    sos.setflags(write=False)
    return sos


@functools.lru_cache(maxsize=16)
def _highpass_zi(sample_rate_hz: int, cutoff_hz: float) -> np.ndarray:
    """``(sections, 2)`` steady-state filter state for a unit step (``sosfilt_zi``: two
    linear solves per section, worth 5-10% of reading a short file, so computed once)."""
    zi = sosfilt_zi(highpass_sos(sample_rate_hz, cutoff_hz))
    zi.setflags(write=False)
    return zi


def highpass(waveform, sample_rate_hz: int = SAMPLE_RATE_HZ, cutoff_hz: float | None = 70.0,
             out: np.ndarray | None = None) -> np.ndarray:
    """Causal Butterworth high-pass (module docstring) of a ``(samples,)`` waveform, as float32.

    The filter runs in float64 over blocks of samples (state carried across blocks, so
    the output is that of one pass) and writes float32; its state starts at the steady
    state of the first sample, so a DC offset is removed without a click at the start.
    ``out`` may be the input itself (a float32 array the caller owns): filtered in place.
    ``cutoff_hz=None`` returns the waveform as float32 unchanged.
    """
    waveform = np.asarray(waveform)
    if cutoff_hz is None:
        return np.asarray(waveform, dtype=np.float32)
    if out is None:
        out = np.empty(waveform.shape, dtype=np.float32)
    if waveform.size == 0:
        return out
    sos = highpass_sos(int(sample_rate_hz), float(cutoff_hz)).copy()
    state = _highpass_zi(int(sample_rate_hz), float(cutoff_hz)) * float(waveform[0])
    for first in range(0, waveform.shape[0], _FILTER_BLOCK):
        block = waveform[first:first + _FILTER_BLOCK].astype(np.float64)
        filtered, state = sosfilt(sos, block, zi=state)
        out[first:first + _FILTER_BLOCK] = filtered
    return out


@dataclass(frozen=True)
class FrameFeatures:
    """Per-frame measurements, each ``(frames,)``; frame ``i`` starts at sample ``i * hop``."""

    energy_dbfs: np.ndarray
    band_ratio: np.ndarray
    flatness: np.ndarray
    frame_length: int
    hop_length: int
    high_band_ratio: np.ndarray | None = None
    """Fraction of the frame's energy above ``high_band_hz`` (band-limited audio: ~0)."""


def _check_waveform(waveform, sample_rate_hz: int) -> np.ndarray:
    waveform = np.asarray(waveform)
    if waveform.dtype != np.float64:
        waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be (samples,) mono, got shape {waveform.shape}")
    if not np.isfinite(waveform).all():
        raise ValueError("waveform contains NaN or infinite samples")
    if int(sample_rate_hz) <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    return waveform


def _frame_lengths(sample_rate_hz: int, config: VadConfig) -> tuple[int, int]:
    return max(1, int(round(config.frame_s * sample_rate_hz))), max(1, int(round(config.hop_s * sample_rate_hz)))


def frame_features(waveform, sample_rate_hz: int = SAMPLE_RATE_HZ,
                   config: VadConfig = DEFAULT_CONFIG) -> FrameFeatures:
    """Energy, speech-band ratio and (context-averaged) spectral flatness of every frame.

    Args:
        waveform: ``(samples,)`` mono float waveform in [-1, 1].
        sample_rate_hz: its sample rate.
        config: framing and band settings; the waveform is high-passed first at
            ``config.highpass_hz`` (module docstring) unless that is ``None``.

    Returns:
        :class:`FrameFeatures` with ``frames = 1 + (samples - frame) // hop`` (0 when the
        waveform is shorter than one frame), float32 except ``energy_dbfs``.
    """
    waveform = _check_waveform(waveform, sample_rate_hz)
    frame, hop = _frame_lengths(sample_rate_hz, config)
    if waveform.size < frame:
        empty = np.zeros(0)
        return FrameFeatures(empty, empty, empty, frame, hop, empty)
    if config.highpass_hz is not None:
        waveform = highpass(waveform, sample_rate_hz, config.highpass_hz)
    frames = np.lib.stride_tricks.sliding_window_view(waveform, frame)[::hop]
    count = frames.shape[0]
    frequencies = np.fft.rfftfreq(frame, d=1.0 / sample_rate_hz)
    in_band = (frequencies >= config.band_hz[0]) & (frequencies <= config.band_hz[1])
    high = np.flatnonzero(frequencies >= config.high_band_hz)
    band_slice = slice(int(np.argmax(in_band)), int(np.flatnonzero(in_band)[-1]) + 1) if in_band.any() else slice(0, 0)
    window = np.hanning(frame).astype(np.float32)
    energy_dbfs = np.empty(count)
    band_ratio = np.empty(count, dtype=np.float32)
    high_ratio = np.zeros(count, dtype=np.float32)
    flatness = np.empty(count, dtype=np.float32)
    context = config.flatness_context_frames
    halo = context  # enough frames either side for the flatness average to see what one pass sees
    for first in range(0, count, BLOCK_FRAMES):
        stop = min(count, first + BLOCK_FRAMES)
        lo, hi = max(0, first - halo), min(count, stop + halo)
        block = np.asarray(frames[lo:hi], dtype=np.float32)
        inner = slice(first - lo, first - lo + stop - first)
        power = np.einsum("ij,ij->i", block, block, dtype=np.float64)[inner] / frame
        energy_dbfs[first:stop] = 10 * np.log10(power + 1e-12)
        centred = block - block.mean(axis=1, keepdims=True, dtype=np.float32)
        centred *= window
        spectrum = scipy.fft.rfft(centred, axis=1)
        spectrum = spectrum.real**2 + spectrum.imag**2
        total = spectrum[inner, 1:].sum(axis=1) + 1e-20  # without the DC bin
        band = spectrum[:, band_slice]
        band_ratio[first:stop] = band[inner].sum(axis=1) / total
        if high.size:
            high_ratio[first:stop] = spectrum[inner, high[0]:].sum(axis=1) / total
        # Average the band spectrum over neighbouring frames (see module docstring, criterion 3).
        smoothed = np.maximum(uniform_filter1d(band, context, axis=0, mode="nearest"), 0)[inner] + 1e-20
        flatness[first:stop] = np.exp(np.mean(np.log(smoothed), axis=1)) / np.mean(smoothed, axis=1)
    return FrameFeatures(energy_dbfs, band_ratio, flatness, frame, hop, high_ratio)


def speech_frames(features: FrameFeatures, config: VadConfig = DEFAULT_CONFIG) -> np.ndarray:
    """``(frames,)`` bool: the per-frame decision before smoothing (module docstring, 1-3)."""
    energy = features.energy_dbfs
    if energy.size == 0:
        return np.zeros(0, dtype=bool)
    floor, peak = np.percentile(energy, [config.floor_percentile, config.peak_percentile])
    margin = np.clip((peak - floor) / 2, config.min_margin_db, config.max_margin_db)
    # The absolute floor moves down for quiet recordings (loud frames below min_energy_dbfs + quiet_span_db)
    # so that a gain change does not change the decision: see the module docstring, criterion 1.
    absolute = min(config.min_energy_dbfs, peak - config.quiet_span_db)
    loud = (energy > floor + margin) & (energy > absolute)
    return loud & (features.band_ratio >= config.min_band_ratio) & (features.flatness <= config.max_flatness)


def true_runs(mask: np.ndarray) -> np.ndarray:
    """``(runs, 2)`` ``[first, last + 1)`` frame ranges of the True runs of ``mask``."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def smooth(mask: np.ndarray, hop_s: float, config: VadConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Hangover: bridge pauses shorter than ``min_silence_s``, then drop runs shorter than ``min_speech_s``."""
    mask = np.asarray(mask, dtype=bool).copy()
    runs = true_runs(mask)
    for (_, end), (start, _) in zip(runs[:-1], runs[1:]):
        if (start - end) * hop_s < config.min_silence_s:
            mask[end:start] = True
    for start, end in true_runs(mask):
        if (end - start) * hop_s < config.min_speech_s:
            mask[start:end] = False
    return mask


def speech_segments(waveform, sample_rate_hz: int = SAMPLE_RATE_HZ,
                    config: VadConfig = DEFAULT_CONFIG) -> list[Segment]:
    """Speech regions of a waveform.

    Args:
        waveform: ``(samples,)`` mono float waveform in [-1, 1].
        sample_rate_hz: its sample rate (at least 8000 so the speech band fits).
        config: VAD parameters (module docstring).

    Returns:
        ``[(start_s, end_s), ...]`` in time order, non-overlapping; empty when the
        waveform holds no speech (silence, steady noise, hum) or is shorter than a frame.
    """
    features = frame_features(waveform, sample_rate_hz, config)
    return segments_from_features(features, np.asarray(waveform).shape[0], sample_rate_hz, config)


def segments_from_features(features: FrameFeatures, num_samples: int, sample_rate_hz: int = SAMPLE_RATE_HZ,
                           config: VadConfig = DEFAULT_CONFIG) -> list[Segment]:
    """:func:`speech_segments` from precomputed :func:`frame_features` of a ``num_samples`` waveform."""
    mask = smooth(speech_frames(features, config), features.hop_length / sample_rate_hz, config)
    total_s = num_samples / sample_rate_hz
    frame, hop = features.frame_length, features.hop_length
    segments = []
    for first, stop in true_runs(mask):
        # Centre of the first / last speech frame -/+ half a hop; the file's own ends when touching them.
        start_s = 0.0 if first == 0 else (first * hop + (frame - hop) / 2) / sample_rate_hz
        end_s = total_s if stop == mask.size else ((stop - 1) * hop + (frame + hop) / 2) / sample_rate_hz
        segments.append((float(start_s), float(min(end_s, total_s))))
    return segments


def speech_duration_s(segments: list[Segment]) -> float:
    """Total duration of ``segments`` in seconds."""
    return float(sum(end - start for start, end in segments))


def trim_silence(waveform, sample_rate_hz: int = SAMPLE_RATE_HZ, margin_s: float = 0.1,
                 segments: list[Segment] | None = None, config: VadConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Keep only the speech: segments widened by ``margin_s`` each side, merged, concatenated.

    Args:
        waveform: ``(samples,)`` mono waveform.
        sample_rate_hz: its sample rate.
        margin_s: kept on each side of a segment (onsets and decays quieter than the threshold).
        segments: precomputed :func:`speech_segments` (computed when ``None``).
        config: VAD parameters, used when ``segments`` is ``None``.

    Returns:
        ``(kept_samples,)`` array of the input's dtype; ``(0,)`` when there is no speech
        (callers that need speech check with :func:`voxmetric.quality.assess`).
    """
    waveform = np.asarray(waveform)
    if margin_s < 0:
        raise ValueError(f"margin_s must be >= 0, got {margin_s}")
    if segments is None:
        segments = speech_segments(waveform, sample_rate_hz, config)
    pieces: list[list[int]] = []
    for start_s, end_s in segments:
        first = max(0, int(round((start_s - margin_s) * sample_rate_hz)))
        stop = min(waveform.shape[0], int(round((end_s + margin_s) * sample_rate_hz)))
        if pieces and first <= pieces[-1][1]:
            pieces[-1][1] = max(pieces[-1][1], stop)
        elif stop > first:
            pieces.append([first, stop])
    if not pieces:
        return waveform[:0].copy()
    return np.concatenate([waveform[first:stop] for first, stop in pieces])
