"""Triplet loss over mined triplets (Schroff et al., 2015)."""

from __future__ import annotations

from torch import Tensor

from .base import Loss
from .distances import pairwise_distances
from .mining import TripletMiner


class TripletLoss(Loss):
    """``L = mean_{(a,p,n) mined} max(0, d(a,p) - d(a,n) + margin)``.

    Schroff, Kalenichenko & Philbin, "FaceNet: A Unified Embedding for Face
    Recognition and Clustering", CVPR 2015, eq. 1-3. Triplets come from a
    :class:`~voxmetric.losses.mining.TripletMiner` (see there for ``all``,
    ``hard``, ``semi_hard``); the loss is the mean over the mined triplets, which
    for ``all`` (only margin-violating triplets are mined) is the mean over
    non-zero terms. A batch without any mined triplet gives 0 (still attached
    to the graph). Distances are computed once, the miner sees them detached.
    FaceNet uses squared euclidean distances; here d is the plain distance.

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        mining: ``"all"`` (default), ``"hard"`` or ``"semi_hard"``.
        margin: in units of the distance. Default 0.2 (FaceNet's value). NOT the
            seed code's setting: pyannote.audio 1.x, ``pyannote/audio/embedding/approaches/triplet_loss.py`` ``TripletLoss``
            uses ``metric='cosine', margin=0.2`` times the metric's maximum distance
            2.0 (``base.py`` ``max_distance``), i.e. 0.4 in these ``1 - cos`` units,
            with ``sampling='all'`` averaging over *all* triplets (zeros included),
            where ``mining="all"`` here averages over margin-violating ones; not
            re-tuned here.
        distance: ``"cosine"`` (``1 - cos``, default) or ``"euclidean"``.
        normalize: L2-normalise before euclidean distances. Default True.
    """

    requires_pairs = True

    def __init__(
        self,
        embedding_dim: int,
        mining: str = "all",
        margin: float = 0.2,
        distance: str = "cosine",
        normalize: bool = True,
    ) -> None:
        super().__init__(embedding_dim)
        self.miner = TripletMiner(mining=mining, margin=margin, distance=distance, normalize=normalize)

    def compute_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        distances = pairwise_distances(embeddings, self.miner.distance, self.miner.normalize)
        anchors, positives, negatives = self.miner.mine(distances, labels)
        if len(anchors) == 0:
            return distances.sum() * 0.0
        violation = distances[anchors, positives] - distances[anchors, negatives] + self.miner.margin
        return violation.clamp(min=0).mean()

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, miner={self.miner!r}"
