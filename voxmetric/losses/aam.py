"""Additive angular margin softmax, AAM / ArcFace (Deng et al., 2019)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError
from ..checks import check_float
from .margin import MarginSoftmaxLoss

# Floor of sin^2(theta) = 1 - cos^2(theta): about the float32 resolution of that
# difference. It keeps sqrt's gradient finite at theta = 0 (an embedding equal to
# its speaker's weight) and changes the value by at most sqrt(EPS) * sin(m).
_SIN2_EPS = 1e-7


class AAMLoss(MarginSoftmaxLoss):
    """Target logit ``s cos(theta + m)``, the others ``s cos(theta)``.

    Deng, Guo, Xue & Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep
    Face Recognition", CVPR 2019, eq. 3. ``cos(theta + m)`` is computed as
    ``cos(theta) cos(m) - sin(theta) sin(m)`` with
    ``sin(theta) = sqrt(max(1 - cos^2, 1e-7))`` (theta lies in [0, pi]).

    Past ``theta > pi - m``, ``cos(theta + m)`` would grow again with theta; as in
    InsightFace the target is then ``cos(theta) - m sin(m)`` (monotonic in theta).
    With ``easy_margin=True`` the margin is applied only where ``cos(theta) > 0``
    and the target is ``cos(theta)`` elsewhere.

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        num_speakers: number of training speakers.
        margin_rad: angular margin ``m`` in radians, in [0, pi/2). Default 0.05
            (the seed system, Coria et al. 2020; the library default of
            pyannote.audio 1.x, ``pyannote/audio/embedding/approaches/arcface_loss.py`` ``AdditiveAngularMarginLoss`` is
            ``margin=0.1, s=7.0``, the paper's tuned system uses 0.05 and 10).
            ArcFace for faces uses 0.5.
            PML's ``ArcFaceLoss`` takes degrees: 0.05 rad = 2.86 degrees.
        scale: ``s``. Default 10.0 (the seed).
        easy_margin: apply the margin only where ``cos(theta) > 0``.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_speakers: int,
        margin_rad: float = 0.05,
        scale: float = 10.0,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_speakers, scale)
        self.margin_rad = check_margin_rad(margin_rad)
        if not isinstance(easy_margin, bool):
            raise ConfigError(f"easy_margin must be true or false, got {easy_margin!r}")
        self.easy_margin = easy_margin

    def target_cosine(self, cosine: Tensor) -> Tensor:
        m = self.margin_rad
        cosine = cosine.clamp(-1.0, 1.0)
        sine = torch.sqrt((1.0 - cosine * cosine).clamp(min=_SIN2_EPS))
        shifted = cosine * math.cos(m) - sine * math.sin(m)
        if self.easy_margin:
            return torch.where(cosine > 0, shifted, cosine)
        return torch.where(cosine > math.cos(math.pi - m), shifted, cosine - m * math.sin(m))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin_rad={self.margin_rad}, easy_margin={self.easy_margin}"


def check_margin_rad(margin_rad: float) -> float:
    """Validate an angular margin in radians (a degree value is caught and named)."""
    margin_rad = check_float(None, "margin_rad", margin_rad)
    if margin_rad >= math.pi / 2:
        raise ConfigError(
            f"margin_rad must be in [0, pi/2) radians, got {margin_rad!r} "
            f"(if that is degrees, use {math.radians(margin_rad):.4f})"
        )
    return margin_rad
