"""Temporal pooling: frames ``(batch, channels, frames)`` -> one vector per segment.

Both poolings compute in float32 whatever the autocast dtype: a variance of
half-precision activations loses most of its digits (and overflows in float16),
and the standard deviation is half of what the segment layer sees.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..errors import ConfigError


def mean_std(frames: Tensor, weights: Optional[Tensor] = None, variance_floor: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation over time, optionally weighted, in float32.

    Parameters
    ----------
    frames : Tensor, (batch, channels, frames)
    weights : Tensor, (batch, channels, frames) or (batch, 1, frames), optional
        Non-negative weights summing to 1 over frames (attention). None: uniform.
    variance_floor : float
        The variance is clamped to at least this before the square root, so that
        constant input (variance 0) gives a finite value and a finite (zero) gradient
        instead of the infinite derivative of sqrt at 0.

    Returns
    -------
    mean, std : Tensor, (batch, channels) each, float32
        The population (biased) statistics, so a single frame is valid input.
    """
    frames = frames.float()
    if weights is None:
        mean = frames.mean(dim=2)
        # Two passes (centre first) rather than E[x^2] - E[x]^2, which cancels badly.
        variance = (frames - mean.unsqueeze(2)).pow(2).mean(dim=2)
    else:
        weights = weights.float()
        mean = (weights * frames).sum(dim=2)
        variance = (weights * (frames - mean.unsqueeze(2)).pow(2)).sum(dim=2)
    return mean, variance.clamp(min=variance_floor).sqrt()


class StatsPooling(nn.Module):
    """Statistics pooling of the x-vector (Snyder et al. 2018): concatenated mean and std.

    Parameters
    ----------
    variance_floor : float
        See :func:`mean_std`.

    Shapes: ``(batch, channels, frames)`` -> ``(batch, 2 * channels)`` (float32).

    >>> StatsPooling()(torch.ones(2, 3, 10)).shape
    torch.Size([2, 6])
    """

    def __init__(self, variance_floor: float = 1e-5):
        super().__init__()
        if not variance_floor > 0:
            raise ConfigError(f"StatsPooling: variance_floor must be > 0, got {variance_floor!r}")
        self.variance_floor = variance_floor

    def forward(self, frames: Tensor) -> Tensor:
        mean, std = mean_std(frames, None, self.variance_floor)
        return torch.cat([mean, std], dim=1)

    def from_moments(self, mean: Tensor, variance: Tensor) -> Tensor:
        """The same statistics from moments computed elsewhere, e.g. for many overlapping
        windows at once from running sums (:mod:`voxmetric.evaluate.shared_frames`).

        ``mean``, ``variance``: ``(batch, channels)`` population moments -> ``(batch, 2 * channels)``
        float32, with the same variance floor as :meth:`forward`.
        """
        return torch.cat([mean.float(), variance.float().clamp(min=self.variance_floor).sqrt()], dim=1)
