"""Contrastive loss over all pairs of the batch (Hadsell et al., 2006)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_choice, check_float
from .base import Loss
from .distances import check_distance, pairwise_distances

CONTRASTIVE_REDUCTIONS = ("all_pairs", "separate")


class ContrastiveLoss(Loss):
    """Pull same-speaker pairs together, push different-speaker pairs beyond ``margin``.

    Over the ``P = B (B - 1) / 2`` pairs ``i < j`` of a batch of B embeddings, with
    ``d_ij`` the distance, ``s_ij = 1`` for a same-speaker pair and 0 otherwise,
    ``h_ij = max(0, margin - d_ij)``:

    * ``reduction="all_pairs"`` (default), one mean over all pairs:
      ``L = 1/(2P) sum_{i<j} [s_ij d_ij^2 + (1 - s_ij) h_ij^2]``;
    * ``reduction="separate"``, positive and negative pairs averaged apart:
      ``L = 1/2 mean_{s_ij = 1} d_ij^2 + 1/2 mean_{s_ij = 0} h_ij^2``
      (a batch of a single speaker has no negative term).

    Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant
    Mapping", CVPR 2006, eq. 4 (with its 1/2 factors; the paper sums over pairs).
    ``all_pairs`` is the seed code's: pyannote.audio 1.x,
    ``pyannote/audio/embedding/approaches/contrastive_loss.py`` ``ContrastiveLoss``
    (squared distances and hinges, summed over the condensed ``pdist`` pairs,
    divided by 2 and by P; its hinge floor is 1e-8 instead of 0, which changes the
    value by at most 1e-16 per pair and not the gradient). A P x K batch has
    P K (K-1)/2 same-speaker pairs but about (P K)^2 / 2 different-speaker pairs,
    so there the pull term weighs little; ``separate`` gives both terms equal weight.

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        distance: ``"cosine"`` (``1 - cos``, default; the seed's ``metric='cosine'``,
            computed in its ``base.py`` ``RepresentationLearning.pdist`` as
            ``0.5 ||x_i/|x_i| - x_j/|x_j| ||^2 = 1 - cos``) or ``"euclidean"``.
        margin: in units of the distance. Default 0.4, the seed's: pyannote.audio
            1.x ``ContrastiveLoss(margin=0.2)`` is a fraction of the metric's
            largest distance (``base.py`` ``max_distance``: 2.0 for cosine and for
            euclidean on unit vectors), 0.2 x 2.0 = 0.4, i.e. "push different
            speakers to cos <= 0.6". Not re-tuned here. This code's earlier default
            was ``margin=0.5, reduction="separate"`` for cosine (1.0 for euclidean).
            With ``normalize=False`` the margin depends on the embedding scale (the
            seed's euclidean metric is on raw embeddings).
        normalize: L2-normalise before euclidean distances. Default True.
        reduction: ``"all_pairs"`` (default, the seed's) or ``"separate"``, see above.
    """

    requires_pairs = True

    def __init__(
        self,
        embedding_dim: int,
        distance: str = "cosine",
        margin: float = 0.4,
        normalize: bool = True,
        reduction: str = "all_pairs",
    ) -> None:
        super().__init__(embedding_dim)
        self.distance, self.normalize = check_distance(distance, normalize)
        self.margin = check_float(None, "margin", margin)
        self.reduction = check_choice(None, "reduction", reduction, CONTRASTIVE_REDUCTIONS)

    def compute_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        distances = pairwise_distances(embeddings, self.distance, self.normalize)
        i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
        d = distances[i, j]
        same = labels[i] == labels[j]
        pull = d.pow(2)
        push = (self.margin - d).clamp(min=0).pow(2)
        if self.reduction == "all_pairs":
            return 0.5 * torch.where(same, pull, push).mean()
        loss = 0.5 * pull[same].mean()
        if not same.all():
            loss = loss + 0.5 * push[~same].mean()
        return loss

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.embedding_dim}, distance={self.distance!r}, margin={self.margin}, "
            f"normalize={self.normalize}, reduction={self.reduction!r}"
        )
