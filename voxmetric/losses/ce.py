"""Softmax cross-entropy over the training speakers."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .base import ClassificationLoss


class SoftmaxLoss(ClassificationLoss):
    """Linear classifier (with bias) over the training speakers + cross-entropy.

    ``L = -1/N sum_i log softmax(W x_i + b)_{y_i}``, with ``W`` of shape
    ``(num_speakers, embedding_dim)``. The baseline loss of Coria et al. (2020);
    the seed code is pyannote.audio 1.x, ``pyannote/audio/embedding/approaches/softmax.py`` / ``classification.py``.

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        num_speakers: number of training speakers (classes).
    """

    def __init__(self, embedding_dim: int, num_speakers: int) -> None:
        super().__init__(embedding_dim, num_speakers)
        self.reset_head()

    def reset_head(self) -> None:
        self.classifier = nn.Linear(self.embedding_dim, self.num_speakers)

    def logits(self, embeddings: Tensor) -> Tensor:
        """``(batch, D) -> (batch, num_speakers)``: ``W x + b`` (``W x`` for a head without bias)."""
        bias = self.classifier.bias  # None for a bias-free head (CenterLoss's default)
        return F.linear(embeddings, self.classifier.weight.float(), None if bias is None else bias.float())

    def compute_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(embeddings), labels)
