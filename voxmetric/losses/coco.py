"""Congenerous cosine loss, CoCo (Liu et al., 2017)."""

from __future__ import annotations

from torch import Tensor

from .margin import MarginSoftmaxLoss


class CoCoLoss(MarginSoftmaxLoss):
    """Cross-entropy on scaled cosines to L2-normalised, learnable speaker centroids.

    ``L = 1/N sum_i -log( exp(alpha cos(x_i, c_{y_i})) / sum_j exp(alpha cos(x_i, c_j)) )``

    Liu, Li, Wang, Tang & Ouyang, "Rethinking Feature Discrimination and
    Polymerization for Large-scale Recognition" (congenerous cosine), NIPS 2017
    workshop, arXiv:1710.00870, eq. 4. It is the margin-free member of the
    margin-softmax family (``psi`` is the identity): AAM with ``margin_rad=0``
    gives the same value for the same weights and scale.

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        num_speakers: number of training speakers.
        scale: ``alpha`` in the paper. Default 6.25, the default of pyannote.audio
            1.x's ``CongenerousCosineLoss`` (``pyannote/audio/embedding/approaches/coco_loss.py``,
            ``alpha=6.25``), the seed paper's code (the paper
            derives a lower bound on alpha from the number of classes).
    """

    def __init__(self, embedding_dim: int, num_speakers: int, scale: float = 6.25) -> None:
        super().__init__(embedding_dim, num_speakers, scale)

    def target_cosine(self, cosine: Tensor) -> Tensor:
        return cosine
