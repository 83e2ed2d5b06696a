"""Normalised softmax with a margin on the target logit: the shared logic.

CoCo, AAM (ArcFace), AM-softmax (CosFace) and sub-center AAM all compute

    cos_ij = <x_i / ||x_i||, w_j / ||w_j||>                   (batch, num_speakers)
    z_ij   = s * psi(cos_ij)  if j == y_i  else  s * cos_ij
    L      = 1/N sum_i -log softmax(z_i)_{y_i}

and differ only in the target step ``psi`` (and, for sub-centres, in how
``cos`` is obtained). This module holds everything else once, in the manner of
pytorch-metric-learning's ``LargeMarginSoftmaxLoss``; subclasses override
:meth:`MarginSoftmaxLoss.target_cosine` (and :meth:`~MarginSoftmaxLoss.cosine`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_float
from .base import ClassificationLoss


class MarginSoftmaxLoss(ClassificationLoss):
    """Cross-entropy on ``scale`` times cosine logits with a margin on the target logit.

    The speaker weights ``weight`` ``(num_speakers, D)`` (one row per speaker, not
    transposed) are L2-normalised in every call, as are the embeddings; the
    weights are Xavier-normal initialised.

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        num_speakers: number of training speakers.
        scale: ``s``, the inverse temperature applied to cosines (> 0).
    """

    def __init__(self, embedding_dim: int, num_speakers: int, scale: float) -> None:
        super().__init__(embedding_dim, num_speakers)
        self.scale = check_float(None, "scale", scale, strict=True)
        self.reset_head()

    @property
    def num_prototypes(self) -> int:
        """Rows of ``weight``: one per speaker (sub-centre losses have several)."""
        return self.num_speakers

    def reset_head(self) -> None:
        weight = torch.empty(self.num_prototypes, self.embedding_dim)
        self.weight = nn.Parameter(nn.init.xavier_normal_(weight))

    def cosine(self, embeddings: Tensor) -> Tensor:
        """``(batch, D) -> (batch, num_speakers)`` cosines between embeddings and speakers."""
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight.float(), dim=1))

    def target_cosine(self, cosine: Tensor) -> Tensor:
        """``psi``: the margin step applied to the target cosines ``(batch, 1)``."""
        raise NotImplementedError

    def logits(self, embeddings: Tensor) -> Tensor:
        """``s * cos``, ``(batch, num_speakers)``: no margin (used for accuracy)."""
        return self.scale * self.cosine(embeddings)

    def compute_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        cosine = self.cosine(embeddings)
        index = labels.unsqueeze(1)
        target = self.target_cosine(cosine.gather(1, index))
        return F.cross_entropy(self.scale * cosine.scatter(1, index, target), labels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"
