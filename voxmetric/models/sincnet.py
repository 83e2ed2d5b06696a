"""SincNet front-end (Ravanelli & Bengio 2018), in the variant of pyannote.audio 1.x used by the seed.

The first layer is a bank of band-pass filters, each learnt through two numbers
only (its low cut-off and its bandwidth, in Hz); two ordinary convolutions follow.
Every layer is conv -> (|x| for the first) -> max-pool -> normalisation -> leaky ReLU.
No layer pads, so output frame ``i`` sees input samples
``[i * frame_hop_samples, i * frame_hop_samples + receptive_field_samples)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..audio.dsp import hz_to_mel, mel_to_hz
from ..errors import ConfigError
from ..checks import check_bool, check_choice, check_float, check_int, check_int_list, check_odd_int

KERNEL_NORMALIZATIONS = ("pyannote", "ideal_bandpass")


class SincConv1d(nn.Module):
    """Learnable band-pass filter bank: ``(batch, 1, samples)`` -> ``(batch, n_filters, frames)``.

    Filter ``k`` passes ``[low_k, high_k]`` with ``low_k = min_low_hz + |low_hz_[k]|`` and
    ``high_k = min(low_k + min_band_hz + |band_hz_[k]|, Nyquist)``; the absolute values keep
    the minima whatever sign training gives the parameters. The kernel is the difference
    of two ideal low-pass responses, Hamming-windowed. Filters are symmetric, so only the
    left half of the taps is computed and mirrored. Filters are built in float32 even under
    autocast: sines of large arguments in half precision would put the cut-offs tens of Hz off.

    At inference (eval mode, gradients off) the kernels are computed once and reused until
    a parameter changes (in place, by loading or by a move to another device): :meth:`kernels`.
    The convolution stays ``F.conv1d``: on one AVX2 core (torch 2.13) it runs these 251-tap,
    stride-5 filters at about 60 GFLOP/s. Measured against it on 3 s and 18 s inputs:
    folding the symmetric taps into a half-size matrix product (the pre-adds cost what the
    product saves) and framing + matmul were no faster; an overlap-save FFT with decimation
    in frequency was up to 1.3x faster on this layer at 3 s (its inverse FFTs and layout
    copies dominate) and not at 18 s, a few percent of a whole embedding: not kept.

    ``kernel_normalization`` says how the taps are scaled:

    - ``"pyannote"`` (default): exactly ``SincConv1d`` of pyannote.audio 1.x, which is
      ``SincConv_fast`` of mravanelli/SincNet. With ``n = -(K-1)/2 .. -1`` and
      ``w = 2 pi n / fs``, the left half is ``(sin(high w) - sin(low w)) / (w / 2)`` times the
      left half-window ``0.54 - 0.46 cos(2 pi m / K)``, ``m = linspace(0, K/2 - 1, int(K/2))``
      (note: not quite ``torch.hamming_window``), the centre tap is ``2 (high - low)``, and
      the whole kernel is divided by ``2 (high - low)``: the centre tap is 1, and the peak
      gain is about ``fs / (2 (high - low))`` for wide bands, less for narrow ones (at
      initialisation, with 251 taps: peak ``|H|`` from 62 for filter 0 down to 26 for the top one).
    - ``"ideal_bandpass"``: the taps of the discrete-time ideal band-pass response,
      ``(sin(2 pi high n / fs) - sin(2 pi low n / fs)) / (pi n)``, centre ``2 (high - low) / fs``,
      times a symmetric ``torch.hamming_window(K)``: ``fs / (2 (high - low))`` times smaller
      than ``"pyannote"`` (26x to 110x at initialisation), with a slightly different window.
      It has gain 1 in the passband only for bands wide against the window's resolution: at
      initialisation the peak ``|H|`` goes from 0.56 (filter 0, 50-100 Hz) to 1.0. These were
      voxmetric's kernels until pyannote's became the default; weights trained with them
      must say so in their model params (the first bundled sinctdnn-aam's file does).

    Parameters
    ----------
    n_filters : int
        Number of band-pass filters (80).
    kernel_samples : int
        Odd filter length in samples (251, about 16 ms).
    stride_samples : int
        Hop between output frames.
    sample_rate_hz : int
    min_low_hz, min_band_hz : float
        Smallest low cut-off and bandwidth (50 Hz each).
    init_low_hz : float
        Low edge of the mel-spaced initialisation (30 Hz).
    kernel_normalization : str
        ``"pyannote"`` (default) or ``"ideal_bandpass"``, see above.

    >>> SincConv1d()(torch.randn(2, 1, 16000)).shape
    torch.Size([2, 80, 15750])
    """

    def __init__(
        self,
        n_filters: int = 80,
        kernel_samples: int = 251,
        stride_samples: int = 1,
        sample_rate_hz: int = 16000,
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
        init_low_hz: float = 30.0,
        kernel_normalization: str = "pyannote",
    ):
        super().__init__()
        owner = "SincConv1d"
        if kernel_normalization not in KERNEL_NORMALIZATIONS:
            raise ConfigError(
                f"{owner}: kernel_normalization must be one of {', '.join(map(repr, KERNEL_NORMALIZATIONS))}, "
                f"got {kernel_normalization!r}"
            )
        self.kernel_normalization = kernel_normalization
        self.n_filters = check_int(owner, "n_filters", n_filters)
        self.kernel_samples = check_odd_int(owner, "kernel_samples", kernel_samples, minimum=3)
        self.stride_samples = check_int(owner, "stride_samples", stride_samples)
        self.sample_rate_hz = check_int(owner, "sample_rate_hz", sample_rate_hz)
        self.min_low_hz = check_float(owner, "min_low_hz", min_low_hz)
        self.min_band_hz = check_float(owner, "min_band_hz", min_band_hz)
        nyquist_hz = sample_rate_hz / 2
        # The top filter starts at (top edge - minima) so that once the minima are added
        # back in forward() it ends exactly at Nyquist.
        top_hz = nyquist_hz - (self.min_low_hz + self.min_band_hz)
        if not 0 <= init_low_hz < top_hz:
            raise ConfigError(
                f"{owner}: min_low_hz + min_band_hz ({self.min_low_hz + self.min_band_hz} Hz) leaves no room "
                f"above init_low_hz ({init_low_hz} Hz) below Nyquist ({nyquist_hz} Hz)"
            )
        mel = torch.linspace(
            float(hz_to_mel(torch.tensor(float(init_low_hz)))),
            float(hz_to_mel(torch.tensor(top_hz))),
            n_filters + 1,
            dtype=torch.float64,
        )
        edges_hz = mel_to_hz(mel)
        self.low_hz_ = nn.Parameter(edges_hz[:-1].float().unsqueeze(1))
        self.band_hz_ = nn.Parameter(edges_hz.diff().float().unsqueeze(1))

        half = (kernel_samples - 1) // 2
        # Left half of the window and the tap times n = -half..-1 (in samples).
        if kernel_normalization == "pyannote":
            # pyannote 1.x / SincNet's SincConv_fast: linspace(0, K/2 - 1, int(K/2)) over K.
            m = torch.linspace(0.0, kernel_samples / 2 - 1, steps=int(kernel_samples / 2), dtype=torch.float64)
            window_left = 0.54 - 0.46 * torch.cos(2 * math.pi * m / kernel_samples)
        else:
            window_left = torch.hamming_window(kernel_samples, periodic=False, dtype=torch.float64)[:half]
        self.register_buffer("window_left", window_left.float(), persistent=False)
        self.register_buffer("n_left", torch.arange(-half, 0, dtype=torch.float32), persistent=False)
        self._kernel_cache: tuple | None = None  # (parameter versions, kernels): see kernels()

    def cutoffs_hz(self) -> tuple[Tensor, Tensor]:
        """Effective ``(low_hz, high_hz)`` of every filter, each ``(n_filters,)`` float32."""
        low = self.min_low_hz + self.low_hz_.float().abs()
        high = torch.clamp(
            low + self.min_band_hz + self.band_hz_.float().abs(), self.min_low_hz, self.sample_rate_hz / 2
        )
        return low.squeeze(1), high.squeeze(1)

    def filters(self) -> Tensor:
        """The kernels, ``(n_filters, 1, kernel_samples)`` float32."""
        low, high = self.cutoffs_hz()
        low, high = low.unsqueeze(1), high.unsqueeze(1)
        # Ideal band-pass: h[n] = (sin(2 pi f_hi n / fs) - sin(2 pi f_lo n / fs)) / (pi n),
        # h[0] = 2 (f_hi - f_lo) / fs. Broadcast products (not matmul) so autocast leaves
        # them in float32.
        omega = (2.0 * math.pi / self.sample_rate_hz) * self.n_left
        band = high - low
        if self.kernel_normalization == "pyannote":
            # (sin(high w) - sin(low w)) / (w / 2) with w = 2 pi n / fs, centre 2 band,
            # all divided by 2 band (pyannote 1.x SincConv1d).
            left = (torch.sin(high * omega) - torch.sin(low * omega)) / (omega / 2) * self.window_left
            left = left / (2.0 * band)
            centre = torch.ones_like(band)
        else:
            left = (torch.sin(high * omega) - torch.sin(low * omega)) / (math.pi * self.n_left)
            left = left * self.window_left
            centre = 2.0 * band / self.sample_rate_hz
        return torch.cat([left, centre, left.flip(dims=[1])], dim=1).unsqueeze(1)

    def kernels(self) -> Tensor:
        """:meth:`filters`, cached while nothing can change them or need their gradient.

        The cache serves eval mode with gradients off (``torch.no_grad`` /
        ``torch.inference_mode``: a cached kernel holds no autograd graph). It is bypassed in
        training mode and while tracing or exporting (the graph computes the kernels itself),
        and refreshed whenever a parameter's version counter (in-place updates, loading),
        storage, device or dtype differs from when it was computed.
        """
        if self.training or torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return self.filters()
        key = tuple((p._version, p.data_ptr(), p.device, p.dtype) for p in (self.low_hz_, self.band_hz_))
        if self._kernel_cache is None or self._kernel_cache[0] != key:
            self._kernel_cache = (key, self.filters())
        return self._kernel_cache[1]

    def forward(self, waveforms: Tensor) -> Tensor:
        return F.conv1d(waveforms, self.kernels(), stride=self.stride_samples)


class SincNet(nn.Module):
    """SincNet frame encoder: waveforms ``(batch, samples)`` -> frames ``(batch, conv_channels, frames)``.

    Parameters
    ----------
    sample_rate_hz : int
        16000.
    sinc_filters : int
        Band-pass filters of the first layer (80).
    sinc_kernel_samples : int
        Their length (251).
    min_low_hz, min_band_hz : float
        Smallest cut-off and bandwidth of the sinc filters (50 Hz each).
    conv_channels : int
        Channels of the two ordinary convolutions (60).
    conv_kernel_size : int
        Their kernel size in frames (5).
    strides : list of 3 ints
        Stride of each of the three convolutions (seed: [5, 1, 1]).
    pool_size : int
        Max-pooling size and stride after each convolution (3).
    waveform_normalize : bool
        Instance-normalise the waveform first (seed: True).
    instance_normalize : bool
        Instance norm (affine) after each layer (seed: True). False: batch norm, which
        pyannote.audio 1.x does not have (its SincNet with ``instance_normalize=False`` has no
        normalisation after the layers at all); voxmetric uses batch norm so that frames
        stay local (shared-frame extraction) and training stays stable.
    kernel_normalization : str
        Scaling of the sinc kernels: ``"pyannote"`` (default, exactly pyannote.audio 1.x) or
        ``"ideal_bandpass"`` (voxmetric's earlier kernels), see :class:`SincConv1d`.
    leaky_relu_slope : float
        0.2 (Ravanelli & Bengio).

    With the defaults: hop 135 samples (8.4 ms), receptive field 621 samples (38.8 ms),
    ``num_frames(48000) == 351`` for 3 s; 42,682 parameters and 0.096 G MACs per second of audio
    (``benchmarks/model_cost.py``).

    >>> sincnet = SincNet()
    >>> sincnet(torch.randn(2, 48000)).shape
    torch.Size([2, 60, 351])
    >>> sincnet.frame_hop_samples, sincnet.receptive_field_samples
    (135, 621)
    """

    def __init__(
        self,
        sample_rate_hz: int = 16000,
        sinc_filters: int = 80,
        sinc_kernel_samples: int = 251,
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
        conv_channels: int = 60,
        conv_kernel_size: int = 5,
        strides: tuple[int, int, int] = (5, 1, 1),
        pool_size: int = 3,
        waveform_normalize: bool = True,
        instance_normalize: bool = True,
        leaky_relu_slope: float = 0.2,
        kernel_normalization: str = "pyannote",
    ):
        super().__init__()
        owner = "SincNet"
        check_int(owner, "sinc_filters", sinc_filters)
        check_odd_int(owner, "sinc_kernel_samples", sinc_kernel_samples, minimum=3)
        strides = check_int_list(owner, "strides", strides, length=3)
        self.pool_size = check_int(owner, "pool_size", pool_size)
        check_int(owner, "conv_channels", conv_channels)
        check_int(owner, "conv_kernel_size", conv_kernel_size)
        self.waveform_normalize = check_bool(owner, "waveform_normalize", waveform_normalize)
        self.instance_normalize = check_bool(owner, "instance_normalize", instance_normalize)
        self.leaky_relu_slope = check_float(owner, "leaky_relu_slope", leaky_relu_slope)
        self.sample_rate_hz = sample_rate_hz
        self.out_channels = conv_channels

        self.waveform_norm = nn.InstanceNorm1d(1, affine=True) if waveform_normalize else nn.Identity()
        sinc = SincConv1d(sinc_filters, sinc_kernel_samples, strides[0], sample_rate_hz, min_low_hz, min_band_hz,
                          kernel_normalization=kernel_normalization)
        self.convs = nn.ModuleList(
            [
                sinc,
                nn.Conv1d(sinc_filters, conv_channels, conv_kernel_size, stride=strides[1]),
                nn.Conv1d(conv_channels, conv_channels, conv_kernel_size, stride=strides[2]),
            ]
        )
        norm = nn.InstanceNorm1d if instance_normalize else nn.BatchNorm1d
        self.norms = nn.ModuleList(
            [norm(sinc_filters, affine=True), norm(conv_channels, affine=True), norm(conv_channels, affine=True)]
        )
        # (kernel, stride) of every layer in order, pooling included: the frame arithmetic.
        self._layers = [
            (sinc_kernel_samples, strides[0]),
            (pool_size, pool_size),
            (conv_kernel_size, strides[1]),
            (pool_size, pool_size),
            (conv_kernel_size, strides[2]),
            (pool_size, pool_size),
        ]
        self.frame_hop_samples = math.prod(stride for _, stride in self._layers)
        receptive_field = 1
        for kernel, stride in reversed(self._layers):
            receptive_field = (receptive_field - 1) * stride + kernel
        self.receptive_field_samples = receptive_field
        # Instance norm (of waveform or layers) uses statistics of the whole input.
        self.frames_are_local = not (waveform_normalize or instance_normalize)

    def num_frames(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` input samples (0 if shorter than the receptive field).

        Every layer (convolution or pooling, no padding) maps ``n`` to
        ``(n - kernel) // stride + 1``; with the defaults, 48000 samples (3 s)
        -> 9550 -> 3183 -> 3179 -> 1059 -> 1055 -> 351.
        """
        frames = num_samples
        for kernel, stride in self._layers:
            if frames < kernel:
                return 0
            frames = (frames - kernel) // stride + 1
        return frames

    def forward(self, waveforms: Tensor) -> Tensor:
        """``(batch, samples)`` -> ``(batch, conv_channels, num_frames(samples))``."""
        outputs = self.waveform_norm(waveforms.unsqueeze(1))
        for layer, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            outputs = conv(outputs)
            if layer == 0:
                # Band-pass outputs oscillate around zero: |x| turns them into an envelope
                # before max-pooling (pyannote's fix, mravanelli/SincNet issue #4).
                outputs = outputs.abs()
            outputs = F.max_pool1d(outputs, self.pool_size)
            outputs = F.leaky_relu(norm(outputs), self.leaky_relu_slope)
        return outputs
