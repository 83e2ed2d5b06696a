"""Log mel filterbank and MFCC features in torch (no torchaudio, no librosa).

Framing follows Kaldi's defaults: 25 ms frames every 10 ms without padding
("snip edges"), per-frame DC removal and pre-emphasis, Hamming window,
zero-padded FFT, triangular filters linear on the HTK mel scale, log energies.
Everything runs in float32 on the input's device, even under autocast: a power
spectrum reaches ``n_fft**2`` and overflows float16.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ..audio import dsp
from ..errors import ConfigError
from ..checks import check_bool, check_float, check_int


LOG_FLOOR = 1.1920929e-07 / 32768.0**2
"""Floor of the mel energies before the log: Kaldi's FLT_EPSILON on the int16 sample scale,
expressed on voxmetric's +-1 scale (~1.1e-16). Only digital silence reaches it, so a gain
change of the input is a constant shift of the features (a floor of 1e-6 clipped 1.2% of
the 80-mel entries of real speech at its own level, 50% at -40 dB)."""

def mel_filterbank(n_mels: int, n_fft: int, sample_rate_hz: int, f_min_hz: float, f_max_hz: float) -> Tensor:
    """:func:`voxmetric.audio.dsp.mel_filterbank` as float32, every filter holding a bin.

    >>> mel_filterbank(40, 512, 16000, 20.0, 8000.0).shape
    torch.Size([257, 40])
    """
    weights = dsp.mel_filterbank(n_mels, n_fft, sample_rate_hz, f_min_hz, f_max_hz)
    empty = (weights.sum(dim=0) == 0).nonzero().flatten().tolist()
    if empty:
        # Too many filters for the FFT resolution: some fall between two bins.
        raise ConfigError(
            f"n_mels={n_mels} is too many for n_fft={n_fft} between {f_min_hz} and {f_max_hz} Hz: "
            f"filters {empty} contain no FFT bin"
        )
    return weights.float()


def dct_matrix(n_mels: int, n_mfcc: int) -> Tensor:
    """Orthonormal DCT-II, ``(n_mels, n_mfcc)``, to right-multiply log mel energies."""
    m = torch.arange(n_mels, dtype=torch.float64).unsqueeze(1)
    k = torch.arange(n_mfcc, dtype=torch.float64).unsqueeze(0)
    dct = torch.cos(math.pi / n_mels * (m + 0.5) * k) * math.sqrt(2.0 / n_mels)
    dct[:, 0] /= math.sqrt(2.0)
    return dct.float()


class Fbank(nn.Module):
    """Log mel filterbank: waveforms ``(batch, samples)`` -> ``(batch, n_mels, frames)``.

    Parameters
    ----------
    n_mels : int
        Mel filters (40 to 80 usual; 80 for ECAPA).
    sample_rate_hz : int
    win_length_ms, hop_length_ms : float
        Frame length and hop (25 ms, 10 ms).
    n_fft : int
        FFT size; frames are zero-padded to it (512).
    f_min_hz : float
        Lowest filter edge (20 Hz, Kaldi's default).
    f_max_hz : float or None
        Highest filter edge; None: Nyquist.
    preemphasis : float
        Coefficient of the per-frame pre-emphasis ``x[n] - a x[n - 1]`` (0.97; 0 disables).
    cmn : bool
        Subtract the per-utterance mean of every coefficient (cepstral mean normalisation).
    log_floor : float
        Energies are clamped to at least this before the log, so digital silence stays finite
        (default :data:`LOG_FLOOR`, Kaldi's: a gain change is then a constant shift).

    ``num_frames(n) = 1 + (n - win) // hop``: 98 frames for 1 s with the defaults.

    >>> Fbank(n_mels=80)(torch.randn(2, 16000)).shape
    torch.Size([2, 80, 98])
    """

    def __init__(
        self,
        n_mels: int = 80,
        sample_rate_hz: int = 16000,
        win_length_ms: float = 25.0,
        hop_length_ms: float = 10.0,
        n_fft: int = 512,
        f_min_hz: float = 20.0,
        f_max_hz: Optional[float] = None,
        preemphasis: float = 0.97,
        cmn: bool = True,
        log_floor: float = LOG_FLOOR,
    ):
        super().__init__()
        owner = type(self).__name__
        self.n_mels = check_int(owner, "n_mels", n_mels)
        self.sample_rate_hz = check_int(owner, "sample_rate_hz", sample_rate_hz)
        self.win_samples = round(check_float(owner, "win_length_ms", win_length_ms, strict=True) * sample_rate_hz / 1000)
        self.hop_samples = round(check_float(owner, "hop_length_ms", hop_length_ms, strict=True) * sample_rate_hz / 1000)
        if self.win_samples < 2 or self.hop_samples < 1:
            raise ConfigError(f"{owner}: win_length_ms={win_length_ms} / hop_length_ms={hop_length_ms} are too short")
        self.n_fft = check_int(owner, "n_fft", n_fft)
        if n_fft < self.win_samples:
            raise ConfigError(f"{owner}: n_fft={n_fft} is shorter than the window ({self.win_samples} samples)")
        nyquist_hz = sample_rate_hz / 2
        f_max_hz = nyquist_hz if f_max_hz is None else check_float(owner, "f_max_hz", f_max_hz)
        if not 0 <= f_min_hz < f_max_hz <= nyquist_hz:
            raise ConfigError(
                f"{owner}: need 0 <= f_min_hz < f_max_hz <= {nyquist_hz}, got f_min_hz={f_min_hz!r}, f_max_hz={f_max_hz!r}"
            )
        self.preemphasis = check_float(owner, "preemphasis", preemphasis)
        self.cmn = check_bool(owner, "cmn", cmn)
        self.log_floor = check_float(owner, "log_floor", log_floor, strict=True)
        try:
            filterbank = mel_filterbank(n_mels, n_fft, sample_rate_hz, float(f_min_hz), f_max_hz)
        except ConfigError as error:
            raise ConfigError(f"{owner}: {error}") from None
        # Non-persistent: derived from the arguments, so checkpoints need not carry them.
        self.register_buffer("mel_weights", filterbank, persistent=False)
        window = torch.hamming_window(self.win_samples, periodic=False, dtype=torch.float64)
        self.register_buffer("window", window.float(), persistent=False)
        self.out_channels = n_mels

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples (0 when shorter than one window)."""
        return 0 if num_samples < self.win_samples else 1 + (num_samples - self.win_samples) // self.hop_samples

    def log_mel(self, waveforms: Tensor) -> Tensor:
        """Log mel energies without mean normalisation, ``(batch, frames, n_mels)`` float32."""
        frames = waveforms.float().unfold(-1, self.win_samples, self.hop_samples)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        if self.preemphasis > 0:
            # Within the frame (first sample against itself, as Kaldi does), so that a
            # frame depends only on its own samples.
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            frames = frames - self.preemphasis * previous
        spectrum = torch.fft.rfft(frames * self.window, n=self.n_fft)
        power = spectrum.real.pow(2) + spectrum.imag.pow(2)
        # matmul is on autocast's low-precision list: keep it in float32 (see module docstring).
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            energies = torch.matmul(power, self.mel_weights)
        return energies.clamp(min=self.log_floor).log()

    def forward(self, waveforms: Tensor) -> Tensor:
        features = self.log_mel(waveforms)
        if self.cmn:
            features = features - features.mean(dim=1, keepdim=True)
        return features.transpose(1, 2)


class MFCC(Fbank):
    """Mel-frequency cepstral coefficients: ``(batch, samples)`` -> ``(batch, n_mfcc, frames)``.

    The orthonormal DCT-II of the log mel energies of :class:`Fbank`, first ``n_mfcc``
    coefficients kept (no liftering: a per-coefficient scale the network learns anyway),
    then per-utterance mean normalisation when ``cmn``. Kaldi's x-vector recipe uses
    30 coefficients from 30 mel filters. Other parameters: see :class:`Fbank`.

    >>> MFCC(n_mfcc=30, n_mels=30)(torch.randn(2, 16000)).shape
    torch.Size([2, 30, 98])
    """

    def __init__(
        self,
        n_mfcc: int = 30,
        n_mels: int = 30,
        sample_rate_hz: int = 16000,
        win_length_ms: float = 25.0,
        hop_length_ms: float = 10.0,
        n_fft: int = 512,
        f_min_hz: float = 20.0,
        f_max_hz: Optional[float] = None,
        preemphasis: float = 0.97,
        cmn: bool = True,
        log_floor: float = LOG_FLOOR,
    ):
        super().__init__(
            n_mels, sample_rate_hz, win_length_ms, hop_length_ms, n_fft, f_min_hz, f_max_hz, preemphasis, cmn, log_floor
        )
        check_int("MFCC", "n_mfcc", n_mfcc)
        if n_mfcc > n_mels:
            raise ConfigError(f"MFCC: n_mfcc={n_mfcc} exceeds n_mels={n_mels}")
        self.register_buffer("dct", dct_matrix(n_mels, n_mfcc), persistent=False)
        self.out_channels = n_mfcc

    def forward(self, waveforms: Tensor) -> Tensor:
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            features = torch.matmul(self.log_mel(waveforms), self.dct)
        if self.cmn:
            features = features - features.mean(dim=1, keepdim=True)
        return features.transpose(1, 2)
