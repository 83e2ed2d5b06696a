"""Waveform augmentation on whole batches: additive noise, reverberation, band limits, gain.

Every function works on a ``(batch, samples)`` float array along the last axis,
without Python loops over rows. :class:`Augmentation` is what the sampler calls
once per batch with the batch's random generator, so augmented batches are as
reproducible as the chunks themselves.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.signal import butter, fftconvolve, sosfiltfilt

from .. import audio
from ..errors import ConfigError
from .banks import check_has_audio, read_noise_bank, read_rirs, stack_rirs

CODEC_HIGHPASS_HZ = 100.0
"""Lower band edge of the codec-like band limit (speech codecs' input high-pass)."""

_POWER_FLOOR = 1e-20
"""Mean-square power treated as silence (no meaningful SNR or level exists)."""


def _power(x: np.ndarray) -> np.ndarray:
    """Mean-square power per row: ``(B, T) -> (B,)`` float64."""
    return np.mean(np.square(x, dtype=np.float64), axis=-1)


def add_noise(clean: np.ndarray, noise: np.ndarray, snr_db: np.ndarray) -> np.ndarray:
    """Add noise scaled so that ``10 log10(P_clean / P_noise) == snr_db`` per row.

    ``P`` is the mean-square power over the row. A row whose clean or noise
    power is zero gets no noise (no scale reaches the target SNR).

    Args:
        clean: ``(B, T)`` waveforms.
        noise: ``(B, T)`` noise excerpts.
        snr_db: ``(B,)`` target signal-to-noise ratios in dB.

    Returns:
        ``(B, T)`` noisy waveforms, dtype of ``clean``.
    """
    clean, noise = np.asarray(clean), np.asarray(noise)
    if clean.shape != noise.shape or clean.ndim != 2:
        raise ValueError(f"clean {clean.shape} and noise {noise.shape} must be the same (B, T) shape")
    p_clean, p_noise = _power(clean), _power(noise)
    target_p_noise = p_clean / 10.0 ** (np.asarray(snr_db, dtype=np.float64) / 10.0)
    audible = (p_clean > _POWER_FLOOR) & (p_noise > _POWER_FLOOR)
    scale = np.where(audible, np.sqrt(target_p_noise / np.where(audible, p_noise, 1.0)), 0.0)
    return (clean + scale[:, None] * noise).astype(clean.dtype, copy=False)


def reverberate(clean: np.ndarray, rirs) -> np.ndarray:
    """Convolve each row with its room impulse response, keeping length and power.

    The output is aligned on the RIR's direct path (its largest absolute
    sample), so reverberation adds no delay, and cut to the input length. It is
    then rescaled to the dry row's mean-square power: the level, and thus a
    later SNR, does not depend on the RIR's gain.

    Args:
        clean: ``(B, T)`` dry waveforms.
        rirs: ``(B, L)`` array, or a list of B 1-D RIRs of any lengths
            (zero-padded at the end to the longest).

    Returns:
        ``(B, T)`` reverberant waveforms, dtype of ``clean``.
    """
    clean = np.asarray(clean)
    rirs = stack_rirs(rirs)
    if clean.ndim != 2 or rirs.shape[0] != clean.shape[0]:
        raise ValueError(f"clean {clean.shape} needs one RIR per row, got {rirs.shape}")
    samples = clean.shape[1]
    wet = fftconvolve(clean.astype(np.float64), rirs, mode="full", axes=-1)
    peaks = np.argmax(np.abs(rirs), axis=-1)
    wet = np.take_along_axis(wet, peaks[:, None] + np.arange(samples)[None, :], axis=-1)
    p_dry, p_wet = _power(clean), _power(wet)
    audible = p_wet > _POWER_FLOOR
    scale = np.where(audible, np.sqrt(p_dry / np.where(audible, p_wet, 1.0)), 0.0)
    return (wet * scale[:, None]).astype(clean.dtype, copy=False)


def band_limit(
    waveforms: np.ndarray,
    low_hz: float = 300.0,
    high_hz: float = 3400.0,
    sample_rate_hz: int = audio.SAMPLE_RATE_HZ,
    order: int = 4,
) -> np.ndarray:
    """Band-pass filter (default: telephone band 300-3400 Hz) along the last axis.

    A Butterworth band-pass of ``order`` applied forward and backward
    (``sosfiltfilt``): zero phase, so the filtered speech is not delayed, and
    twice the attenuation in dB of a single pass.

    Args:
        waveforms: ``(..., T)``.

    Returns:
        ``(..., T)`` float32.
    """
    if not 0 < low_hz < high_hz < sample_rate_hz / 2:
        raise ConfigError(
            f"band_limit needs 0 < low_hz < high_hz < Nyquist ({sample_rate_hz / 2:g} Hz), "
            f"got low_hz={low_hz}, high_hz={high_hz}"
        )
    sos = butter(order, [low_hz, high_hz], btype="bandpass", fs=sample_rate_hz, output="sos")
    return sosfiltfilt(sos, np.asarray(waveforms, dtype=np.float64), axis=-1).astype(np.float32)


def random_gain_db(
    waveforms: np.ndarray,
    rng: np.random.Generator,
    gain_db: tuple[float, float] = (-6.0, 6.0),
) -> np.ndarray:
    """Scale each row by a gain drawn uniformly in ``gain_db`` (dB); no clipping.

    Args:
        waveforms: ``(B, T)``.

    Returns:
        ``(B, T)``, dtype of ``waveforms``.
    """
    low_db, high_db = gain_db
    if low_db > high_db:
        raise ConfigError(f"gain_db must be (low, high) with low <= high, got {gain_db}")
    waveforms = np.asarray(waveforms)
    gains_db = rng.uniform(low_db, high_db, size=waveforms.shape[0])
    return (waveforms * 10.0 ** (gains_db / 20.0)[:, None]).astype(waveforms.dtype, copy=False)


def eq_tilt(
    waveforms: np.ndarray,
    tilt_db_per_octave: np.ndarray,
    sample_rate_hz: int = audio.SAMPLE_RATE_HZ,
    pivot_hz: float = 1000.0,
) -> np.ndarray:
    """Tilt each row's spectrum by ``tilt_db_per_octave[row]`` around ``pivot_hz``.

    A microphone or room colouring: gain(f) = tilt * log2(f / pivot) dB, held
    flat below 100 Hz, applied in one batched real FFT. Row power is restored
    afterwards, so the tilt changes the timbre, not the level.

    Args:
        waveforms: ``(B, T)``.
        tilt_db_per_octave: ``(B,)``.

    Returns:
        ``(B, T)`` float32.
    """
    x = np.asarray(waveforms, dtype=np.float64)
    freqs_hz = np.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate_hz)
    octaves = np.log2(np.maximum(freqs_hz, 100.0) / pivot_hz)
    gains = 10.0 ** (np.asarray(tilt_db_per_octave, dtype=np.float64)[:, None] * octaves[None, :] / 20.0)
    tilted = np.fft.irfft(np.fft.rfft(x, axis=-1) * gains, n=x.shape[-1], axis=-1)
    scale = np.sqrt(_power(x) / np.maximum(_power(tilted), 1e-20))
    return (tilted * scale[:, None]).astype(np.float32)


class Augmentation:
    """Per-chunk additive noise, reverberation and channel effects.

    Noise (on with ``noise_dir``): every row, with probability ``noise_prob``,
    gets an excerpt from a random offset of the noise bank at an SNR drawn
    uniformly in ``snr_db``. The bank is the folder's audio files (recursive:
    the MUSAN ``noise`` collection works) concatenated, in a fixed shuffled
    order, up to ``max_noise_s`` seconds in all, which bounds memory at
    ``max_noise_s * 64 kB`` per process (the default, 600 s, is ~38 MB).

    Reverberation (on with ``rir_dir``): with probability ``rir_prob`` a row
    is convolved with a random RIR of the folder, before the noise is added
    (the noise is the room's background, not a reverberated source). Files
    with "noise" in their path are left out, so the RIRS_NOISES root or its
    ``real_rirs_isotropic_noises`` folder can be given as they are. At most
    ``max_rir_files`` files (a fixed random subset) are loaded.

    Channel (for robustness to how people really record): with probability
    ``band_limit_prob`` a row is band-passed to the telephone band (300-3400
    Hz); with probability ``eq_tilt_prob`` its spectrum is tilted by a slope
    drawn uniformly in +-``eq_tilt_db_per_octave``; with ``gain_db`` every row
    is scaled by a gain drawn uniformly in that range. With probability
    ``codec_prob`` a row is low-passed at a cut-off drawn from
    ``codec_cutoffs_hz`` (the audio bandwidths of common speech codecs:
    3.4 kHz narrowband, 4 kHz, 5.5 kHz, 7 kHz wideband), with a 100 Hz
    high-pass as codecs' input filters have. Order: reverberation, noise,
    band limit, codec band, tilt, gain (the channel acts on what the
    microphone picked up).

    Files are loaded on the first call, not at construction, so the object
    pickles cheaply into DataLoader workers; every process loads the same
    files in the same order, so results do not depend on the worker count.

    Args:
        noise_dir: folder of noise audio, or ``None`` (no noise).
        rir_dir: folder of room impulse responses, or ``None`` (no reverb).
        snr_db: ``(low, high)`` SNR range in dB.
        noise_prob: probability that a row gets noise.
        rir_prob: probability that a row is reverberated (needs ``rir_dir``).
        sample_rate_hz: sample rate of the waveforms.
        max_noise_s: most seconds of noise held in memory.
        max_rir_files: most RIR files loaded.
        band_limit_prob: probability of the telephone band.
        eq_tilt_prob: probability of a spectral tilt.
        eq_tilt_db_per_octave: largest tilt magnitude in dB per octave.
        gain_db: ``(low, high)`` gain range in dB, or ``None`` (no gain change).
        codec_prob: probability of a codec-like band limit (draws nothing when 0,
            so configs without it give the same batches as before).
        codec_cutoffs_hz: the upper band edges it draws from, uniformly.
    """

    def __init__(
        self,
        noise_dir: str | None = None,
        rir_dir: str | None = None,
        snr_db: tuple[float, float] = (10.0, 20.0),
        noise_prob: float = 1.0,
        rir_prob: float = 0.0,
        sample_rate_hz: int = audio.SAMPLE_RATE_HZ,
        max_noise_s: float = 600.0,
        max_rir_files: int = 2000,
        band_limit_prob: float = 0.0,
        eq_tilt_prob: float = 0.0,
        eq_tilt_db_per_octave: float = 3.0,
        gain_db: tuple[float, float] | None = None,
        codec_prob: float = 0.0,
        codec_cutoffs_hz: tuple[float, ...] = (3400.0, 4000.0, 5500.0, 7000.0),
    ):
        _check_settings(snr_db, noise_prob, rir_prob, rir_dir, max_noise_s, max_rir_files)
        for field, value in (("band_limit_prob", band_limit_prob), ("eq_tilt_prob", eq_tilt_prob),
                             ("codec_prob", codec_prob)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{field} must be in [0, 1], got {value}")
        if gain_db is not None and (len(gain_db) != 2 or gain_db[0] > gain_db[1]):
            raise ConfigError(f"gain_db must be (low, high) with low <= high, got {gain_db}")
        self.band_limit_prob, self.eq_tilt_prob = float(band_limit_prob), float(eq_tilt_prob)
        self.codec_prob = float(codec_prob)
        self.codec_cutoffs_hz = tuple(float(c) for c in codec_cutoffs_hz)
        if self.codec_prob > 0 and (not self.codec_cutoffs_hz or not all(
                CODEC_HIGHPASS_HZ < c < sample_rate_hz / 2 for c in self.codec_cutoffs_hz)):
            raise ConfigError(f"codec_cutoffs_hz must be non-empty, each in ({CODEC_HIGHPASS_HZ:g} Hz, Nyquist), "
                              f"got {list(codec_cutoffs_hz)}")
        self.eq_tilt_db_per_octave = float(eq_tilt_db_per_octave)
        self.gain_db = None if gain_db is None else (float(gain_db[0]), float(gain_db[1]))
        self.noise_dir = None if noise_dir is None else os.fspath(noise_dir)
        self.rir_dir = None if rir_dir is None else os.fspath(rir_dir)
        for field, folder in (("noise_dir", self.noise_dir), ("rir_dir", self.rir_dir)):
            if folder is not None:
                check_has_audio(field, folder)
        self.snr_db = (float(snr_db[0]), float(snr_db[1]))
        self.noise_prob, self.rir_prob = float(noise_prob), float(rir_prob)
        self.sample_rate_hz = int(sample_rate_hz)
        self.max_noise_s, self.max_rir_files = float(max_noise_s), int(max_rir_files)
        self._noise_bank: np.ndarray | None = None  # (samples,) float32
        self._rirs: np.ndarray | None = None  # (files, L) float64

    def __getstate__(self) -> dict:
        # Workers reload the files themselves: pickling the bank would copy it per worker.
        state = dict(self.__dict__)
        state["_noise_bank"] = state["_rirs"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"Augmentation(noise_dir={self.noise_dir!r}, rir_dir={self.rir_dir!r}, snr_db={self.snr_db}, "
            f"noise_prob={self.noise_prob}, rir_prob={self.rir_prob})"
        )

    def __call__(self, waveforms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment a batch.

        Args:
            waveforms: ``(B, T)`` float32.
            rng: the batch's generator; the same generator state gives the same output.

        Returns:
            ``(B, T)`` float32 (a new array; the input is not modified).
        """
        out = np.array(waveforms, dtype=np.float32, copy=True)
        if out.ndim != 2:
            raise ValueError(f"waveforms must be (batch, samples), got shape {out.shape}")
        if self.rir_dir is not None:
            out = self._reverberate_some(out, rng)
        if self.noise_dir is not None:
            out = self._add_noise_some(out, rng)
        return self._channel(out, rng)

    def _channel(self, out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Band limit, tilt and gain; draws are made for every row whatever the masks."""
        if self.band_limit_prob > 0:
            rows = rng.random(len(out)) < self.band_limit_prob
            if rows.any():
                out[rows] = band_limit(out[rows], sample_rate_hz=self.sample_rate_hz)
        if self.codec_prob > 0:
            rows = rng.random(len(out)) < self.codec_prob
            picks = rng.integers(len(self.codec_cutoffs_hz), size=len(out))
            for k, cutoff in enumerate(self.codec_cutoffs_hz):  # a few filters, not a loop over rows
                chosen = rows & (picks == k)
                if chosen.any():
                    out[chosen] = band_limit(out[chosen], CODEC_HIGHPASS_HZ, cutoff, sample_rate_hz=self.sample_rate_hz)
        if self.eq_tilt_prob > 0:
            rows = rng.random(len(out)) < self.eq_tilt_prob
            tilts = rng.uniform(-self.eq_tilt_db_per_octave, self.eq_tilt_db_per_octave, size=len(out))
            if rows.any():
                out[rows] = eq_tilt(out[rows], tilts[rows], self.sample_rate_hz)
        if self.gain_db is not None:
            out = random_gain_db(out, rng, self.gain_db)
        return out

    def _reverberate_some(self, out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rirs = self._load_rirs()
        # Draw for every row whatever the mask: the generator's consumption stays fixed.
        rows = rng.random(len(out)) < self.rir_prob
        picks = rng.integers(len(rirs), size=len(out))
        if rows.any():
            out[rows] = reverberate(out[rows], rirs[picks[rows]])
        return out

    def _add_noise_some(self, out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        bank = self._load_noise()
        samples = out.shape[1]
        if len(bank) < samples:
            bank = np.resize(bank, samples)  # a bank shorter than a chunk: tile it
        rows = rng.random(len(out)) < self.noise_prob
        offsets = rng.integers(len(bank) - samples + 1, size=len(out))
        snr_db = rng.uniform(*self.snr_db, size=len(out))
        if rows.any():
            excerpts = np.lib.stride_tricks.sliding_window_view(bank, samples)[offsets[rows]]
            out[rows] = add_noise(out[rows], excerpts, snr_db[rows])
        return out

    def _load_noise(self) -> np.ndarray:
        if self._noise_bank is None:
            self._noise_bank = read_noise_bank(self.noise_dir, self.max_noise_s, self.sample_rate_hz)
        return self._noise_bank

    def _load_rirs(self) -> np.ndarray:
        if self._rirs is None:
            self._rirs = read_rirs(self.rir_dir, self.max_rir_files, self.sample_rate_hz)
        return self._rirs


def _check_settings(snr_db, noise_prob, rir_prob, rir_dir, max_noise_s, max_rir_files) -> None:
    if len(snr_db) != 2 or snr_db[0] > snr_db[1]:
        raise ConfigError(f"snr_db must be (low, high) with low <= high, got {snr_db}")
    for field, value in (("noise_prob", noise_prob), ("rir_prob", rir_prob)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{field} must be in [0, 1], got {value}")
    if rir_prob > 0 and rir_dir is None:
        raise ConfigError(f"rir_prob={rir_prob} needs rir_dir (a folder of room impulse responses)")
    if not max_noise_s > 0:
        raise ConfigError(f"max_noise_s must be positive, got {max_noise_s}")
    if max_rir_files < 1:
        raise ConfigError(f"max_rir_files must be >= 1, got {max_rir_files}")
