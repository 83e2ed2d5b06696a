"""Sub-center additive angular margin softmax (Deng et al., 2020)."""

from __future__ import annotations

from torch import Tensor

from .aam import AAMLoss
from ..checks import check_int


class SubCenterAAMLoss(AAMLoss):
    """AAM where each speaker has K sub-centres and the closest one counts.

    ``cos(theta_ij) = max_k cos(x_i, w_jk)``, then the AAM target step
    (``s cos(theta + m)`` for the true speaker). Deng, Guo, Liu, Zafeiriou et al.,
    "Sub-center ArcFace: Boosting Face Recognition by Large-Scale Noisy Web
    Faces", ECCV 2020, eq. 2. Noisy chunks can settle on a non-dominant
    sub-centre instead of pulling the speaker's main one. The paper's later
    step (drop non-dominant sub-centres and samples far from the dominant one)
    is not implemented. With K = 1 it equals :class:`AAMLoss`.

    ``weight`` has shape ``(num_speakers * K, D)``; rows ``j*K .. j*K + K-1``
    belong to speaker j.

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        num_speakers: number of training speakers.
        num_subcenters: K >= 1. Default 3 (the paper's choice).
        margin_rad: angular margin in radians. Default 0.05 (as ``aam``, the seed).
        scale: ``s``. Default 10.0 (as ``aam``).
        easy_margin: see :class:`AAMLoss`.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_speakers: int,
        num_subcenters: int = 3,
        margin_rad: float = 0.05,
        scale: float = 10.0,
        easy_margin: bool = False,
    ) -> None:
        # Set before the base creates the head, whose shape depends on it.
        self.num_subcenters = check_int(None, "num_subcenters", num_subcenters)
        super().__init__(embedding_dim, num_speakers, margin_rad, scale, easy_margin)

    @property
    def num_prototypes(self) -> int:
        return self.num_speakers * self.num_subcenters

    def cosine(self, embeddings: Tensor) -> Tensor:
        """``(batch, D) -> (batch, num_speakers)``: max over each speaker's sub-centres."""
        per_center = super().cosine(embeddings)
        return per_center.view(-1, self.num_speakers, self.num_subcenters).amax(dim=2)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_subcenters={self.num_subcenters}"
