"""Pairwise distances between the embeddings of a batch (pair and triplet losses)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..checks import check_choice

DISTANCES = ("cosine", "euclidean")

# Floor of squared euclidean distances: keeps sqrt's gradient finite for identical
# embeddings (the diagonal, duplicated chunks) and absorbs the small negative
# values the Gram-matrix formula produces by cancellation.
_SQUARED_EPS = 1e-12


def check_distance(distance: str, normalize: bool) -> tuple[str, bool]:
    """Validate a (distance, normalize) option pair; raise :class:`ConfigError` otherwise."""
    check_choice(None, "distance", distance, DISTANCES)
    if not isinstance(normalize, bool):
        raise ConfigError(f"normalize must be true or false, got {normalize!r}")
    if distance == "cosine" and not normalize:
        raise ConfigError("normalize=False only applies to distance='euclidean'; cosine distance always uses unit vectors")
    return distance, normalize


def pairwise_distances(embeddings: Tensor, distance: str, normalize: bool = True) -> Tensor:
    """``(batch, D) -> (batch, batch)`` distance matrix.

    * ``cosine``: ``d = 1 - cos(x_i, x_j)``, in [0, 2];
    * ``euclidean``: ``d = ||x_i - x_j||_2``, on L2-normalised embeddings when
      ``normalize`` (then ``d = sqrt(2 - 2 cos)``, in [0, 2]) or on raw ones.
    """
    if distance == "cosine" or normalize:
        embeddings = F.normalize(embeddings, dim=1)
    if distance == "cosine":
        return 1.0 - embeddings @ embeddings.T
    squared_norms = embeddings.pow(2).sum(dim=1)
    squared = squared_norms.unsqueeze(1) + squared_norms.unsqueeze(0) - 2.0 * embeddings @ embeddings.T
    return torch.sqrt(squared.clamp(min=_SQUARED_EPS))
