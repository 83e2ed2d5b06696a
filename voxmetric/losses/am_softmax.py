"""Additive margin softmax, AM-softmax / CosFace (Wang et al., 2018)."""

from __future__ import annotations

from torch import Tensor

from ..checks import check_float
from .margin import MarginSoftmaxLoss


class AMSoftmaxLoss(MarginSoftmaxLoss):
    """Target logit ``s (cos(theta) - m)``, the others ``s cos(theta)``.

    Wang, Cheng, Liu & Liu, "Additive Margin Softmax for Face Verification",
    IEEE SPL 2018, eq. 6; the same loss as CosFace (Wang, Wang, Zhou et al.,
    "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018, eq. 4).

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        num_speakers: number of training speakers.
        margin: ``m``, subtracted from the target cosine (cosine units,
            dimensionless, >= 0). Default 0.2, a common speaker-verification
            setting (the face papers use 0.35).
        scale: ``s``. Default 30.0, the common speaker-verification setting with
            m = 0.2 (AM-softmax uses 30 for faces, CosFace 64).
    """

    def __init__(self, embedding_dim: int, num_speakers: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__(embedding_dim, num_speakers, scale)
        self.margin = check_float(None, "margin", margin)

    def target_cosine(self, cosine: Tensor) -> Tensor:
        return cosine - self.margin

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}"
