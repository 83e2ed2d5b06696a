"""Contrastive loss over all pairs of the batch (Hadsell et al., 2006)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_float
from .base import Loss
from .distances import check_distance, pairwise_distances

# Default margins: both push different speakers to cos <= 0.5
# (1 - 0.5 = 0.5 cosine distance; sqrt(2 - 2 * 0.5) = 1 on the unit sphere).
DEFAULT_MARGIN = {"cosine": 0.5, "euclidean": 1.0}


class ContrastiveLoss(Loss):
    """Pull same-speaker pairs together, push different-speaker pairs beyond ``margin``.

    Over all pairs ``i < j`` of the batch, with ``d_ij`` the distance:

        L = 1/2 mean_{same(i,j)} d_ij^2  +  1/2 mean_{different(i,j)} max(0, margin - d_ij)^2

    Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant
    Mapping", CVPR 2006, eq. 4 (with its 1/2 factors; the paper sums over
    pairs). Positive and negative pairs are averaged separately: a P x K batch
    has P K (K-1)/2 same-speaker pairs but about (P K)^2 / 2 different-speaker
    pairs, and one mean over all pairs would drown the pull term. A batch of a
    single speaker has no negative term.

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        distance: ``"cosine"`` (``1 - cos``, default) or ``"euclidean"``.
        margin: in units of the distance. Default (``None``): 0.5 for cosine,
            1.0 for euclidean; both mean "push different speakers to cos <= 0.5"
            on unit vectors. NOT the seed code's setting: pyannote.audio 1.x, ``pyannote/audio/embedding/approaches/contrastive_loss.py``
            ``ContrastiveLoss`` uses ``metric='cosine', margin=0.2`` times the
            metric's maximum distance 2.0 (``base.py`` ``max_distance``), i.e. 0.4 in
            these ``1 - cos`` units, and one mean over all pairs; not re-tuned here. With ``normalize=False`` it depends on the
            embedding scale.
        normalize: L2-normalise before euclidean distances. Default True.
    """

    requires_pairs = True

    def __init__(
        self,
        embedding_dim: int,
        distance: str = "cosine",
        margin: float | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__(embedding_dim)
        self.distance, self.normalize = check_distance(distance, normalize)
        self.margin = DEFAULT_MARGIN[distance] if margin is None else check_float(None, "margin", margin)

    def compute_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        distances = pairwise_distances(embeddings, self.distance, self.normalize)
        i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
        d = distances[i, j]
        same = labels[i] == labels[j]
        loss = 0.5 * d[same].pow(2).mean()
        if not same.all():
            loss = loss + 0.5 * (self.margin - d[~same]).clamp(min=0).pow(2).mean()
        return loss

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, distance={self.distance!r}, margin={self.margin}, normalize={self.normalize}"
