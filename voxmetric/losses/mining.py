"""Triplet mining: which (anchor, positive, negative) triplets of a batch to train on."""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_choice, check_float
from .distances import check_distance, pairwise_distances

MINING = ("all", "hard", "semi_hard")


class TripletMiner:
    """Select index triplets ``(anchors, positives, negatives)`` from a labelled batch.

    A valid triplet has ``y_a == y_p``, ``a != p`` and ``y_n != y_a``. With
    ``d_ap = d(a, p)`` and ``d_an = d(a, n)``:

    * ``all``: every valid triplet that violates the margin,
      ``d_an < d_ap + margin`` (i.e. its triplet loss is > 0): "batch all" of
      Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
      Re-Identification", arXiv:1703.07737, 2017, averaged over non-zero terms.
    * ``hard``: "batch hard" (Hermans et al. 2017): for each anchor that has a
      positive and a negative in the batch, one triplet with its farthest
      positive and its closest negative (kept even when the loss is 0).
    * ``semi_hard``: Schroff, Kalenichenko & Philbin, "FaceNet", CVPR 2015,
      sec. 3.2: for each positive pair (a, p), the closest negative among the
      semi-hard ones, ``d_ap < d_an < d_ap + margin``. A pair without a
      semi-hard negative yields no triplet (no fall-back to hard or easy ones).

    Ties go to the lowest index. Triplets come in lexicographic (a, p) order.

    Args:
        mining: ``"all"``, ``"hard"`` or ``"semi_hard"``.
        margin: triplet margin, in units of the distance (used by ``all`` and
            ``semi_hard``). Default 0.2.
        distance: ``"cosine"`` (1 - cos) or ``"euclidean"``.
        normalize: L2-normalise before euclidean distances (cosine always does).
    """

    def __init__(self, mining: str = "all", margin: float = 0.2, distance: str = "cosine", normalize: bool = True) -> None:
        self.mining = check_choice(None, "mining", mining, MINING)
        self.margin = check_float(None, "margin", margin)
        self.distance, self.normalize = check_distance(distance, normalize)

    def __call__(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(batch, D)``, ``(batch,)`` -> three int64 index tensors ``(T,)``."""
        with torch.no_grad():
            distances = pairwise_distances(embeddings.float(), self.distance, self.normalize)
        return self.mine(distances, labels)

    def mine(self, distances: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Select triplets from a ``(batch, batch)`` distance matrix and ``(batch,)`` labels."""
        distances = distances.detach()
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        negative = ~same
        if self.mining == "hard":
            return self._batch_hard(distances, positive, negative)
        # (a, p, n) cube of valid triplets; batches are small (P*K <= a few hundred).
        valid = positive.unsqueeze(2) & negative.unsqueeze(1)
        d_ap = distances.unsqueeze(2)
        d_an = distances.unsqueeze(1)
        if self.mining == "all":
            anchors, positives, negatives = torch.nonzero(valid & (d_an < d_ap + self.margin), as_tuple=True)
            return anchors, positives, negatives
        return self._semi_hard(distances, valid & (d_an > d_ap) & (d_an < d_ap + self.margin))

    @staticmethod
    def _batch_hard(distances: Tensor, positive: Tensor, negative: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        anchors = torch.nonzero(positive.any(dim=1) & negative.any(dim=1), as_tuple=True)[0]
        d = distances[anchors]
        hardest_positive = d.masked_fill(~positive[anchors], float("-inf")).argmax(dim=1)
        hardest_negative = d.masked_fill(~negative[anchors], float("inf")).argmin(dim=1)
        return anchors, hardest_positive, hardest_negative

    @staticmethod
    def _semi_hard(distances: Tensor, semi_hard: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        anchors, positives = torch.nonzero(semi_hard.any(dim=2), as_tuple=True)
        d_an = distances[anchors].masked_fill(~semi_hard[anchors, positives], float("inf"))
        return anchors, positives, d_an.argmin(dim=1)

    def __repr__(self) -> str:
        return (
            f"TripletMiner(mining={self.mining!r}, margin={self.margin}, "
            f"distance={self.distance!r}, normalize={self.normalize})"
        )
