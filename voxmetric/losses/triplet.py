"""Triplet loss over mined triplets (Schroff et al., 2015)."""

from __future__ import annotations

from torch import Tensor

from ..checks import check_choice
from .base import Loss
from .distances import pairwise_distances
from .mining import TripletMiner

TRIPLET_REDUCTIONS = ("all_triplets", "violating")


class TripletLoss(Loss):
    """Hinge ``l(a,p,n) = max(0, d(a,p) - d(a,n) + margin)`` averaged over triplets.

    Schroff, Kalenichenko & Philbin, "FaceNet: A Unified Embedding for Face
    Recognition and Clustering", CVPR 2015, eq. 1-3 (FaceNet uses squared
    euclidean distances; here d is the plain distance). Triplets come from a
    :class:`~voxmetric.losses.mining.TripletMiner` (see there for ``all``,
    ``hard``, ``semi_hard``); distances are computed once, the miner sees them
    detached. The average:

    * ``reduction="all_triplets"`` (default): over every triplet the mining
      considers, zero terms included. For ``all``, the valid triplets
      ``(a, p, n)``, ``y_p = y_a``, ``p != a``, ``y_n != y_a``, of which there are
      ``T = sum_a (K_a - 1)(B - K_a)`` (K_a chunks of a's speaker in a batch of
      B): ``L = 1/T sum l(a,p,n)``. For ``hard`` and ``semi_hard``, the mined ones.
    * ``reduction="violating"``: over the triplets with ``l > 0`` only (Hermans,
      Beyer & Leibe, "In Defense of the Triplet Loss for Person
      Re-Identification", arXiv:1703.07737, 2017, "batch all"; pytorch-metric-
      learning's ``AvgNonZeroReducer``), which keeps the loss from shrinking as
      easy triplets dominate.

    ``mining="all"`` with ``all_triplets`` is the seed code's: pyannote.audio 1.x,
    ``pyannote/audio/embedding/approaches/triplet_loss.py`` ``TripletLoss``
    (``sampling='all'``: every valid triplet; ``clamp='positive'``:
    ``max(0, delta + margin_)``; ``torch.mean`` over the triplets). A batch with no
    triplet to average gives 0 (still attached to the graph).

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        mining: ``"all"`` (default, the seed's ``sampling='all'``), ``"hard"`` or
            ``"semi_hard"``.
        margin: in units of the distance. Default 0.4, the seed's: pyannote.audio
            1.x ``TripletLoss(margin=0.2)`` is a fraction of the metric's largest
            distance (``base.py`` ``max_distance``: 2.0 for cosine and for
            euclidean on unit vectors), ``margin_`` = 0.2 x 2.0 = 0.4. Not re-tuned
            here. This code's earlier default was ``margin=0.2,
            reduction="violating"`` (0.2 is FaceNet's value, on squared euclidean
            distances of unit vectors).
        distance: ``"cosine"`` (``1 - cos``, default; the seed's ``metric='cosine'``,
            computed in its ``base.py`` ``RepresentationLearning.pdist`` as
            ``0.5 ||x_i/|x_i| - x_j/|x_j| ||^2 = 1 - cos``) or ``"euclidean"``.
        normalize: L2-normalise before euclidean distances. Default True.
        reduction: ``"all_triplets"`` (default, the seed's) or ``"violating"``, see above.
    """

    requires_pairs = True

    def __init__(
        self,
        embedding_dim: int,
        mining: str = "all",
        margin: float = 0.4,
        distance: str = "cosine",
        normalize: bool = True,
        reduction: str = "all_triplets",
    ) -> None:
        super().__init__(embedding_dim)
        self.miner = TripletMiner(mining=mining, margin=margin, distance=distance, normalize=normalize)
        self.reduction = check_choice(None, "reduction", reduction, TRIPLET_REDUCTIONS)

    def compute_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        distances = pairwise_distances(embeddings, self.miner.distance, self.miner.normalize)
        anchors, positives, negatives = self.miner.mine(distances, labels)
        hinge = (distances[anchors, positives] - distances[anchors, negatives] + self.miner.margin).clamp(min=0)
        if self.reduction == "violating":
            count = int((hinge > 0).sum())
        elif self.miner.mining == "all":
            # the miner keeps only violating triplets; the others add 0 to the sum
            count = valid_triplet_count(labels)
        else:
            count = len(hinge)
        if count == 0:
            return distances.sum() * 0.0
        return hinge.sum() / count

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, miner={self.miner!r}, reduction={self.reduction!r}"


def valid_triplet_count(labels: Tensor) -> int:
    """Number of (a, p, n) with ``y_p = y_a``, ``p != a``, ``y_n != y_a`` in ``(batch,)`` labels."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    speaker_chunks = same.sum(dim=1)
    return int(((speaker_chunks - 1) * (len(labels) - speaker_chunks)).sum())
