"""Center loss (Wen et al., 2016), by default in the cosine form of the seed code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_bool, check_choice, check_float
from .base import ClassificationLoss
from .ce import SoftmaxLoss

CENTER_DISTANCES = ("cosine", "euclidean")

# F.cosine_similarity's floor of ||x|| ||c||, as in the seed code (eps=1e-8).
_COSINE_EPS = 1e-8


class CenterLoss(SoftmaxLoss):
    """Softmax cross-entropy plus a pull of each embedding towards its speaker centre.

    ``L = L_CE + lambda_ * L_C`` over a batch of N embeddings, where ``L_CE`` is the
    cross-entropy of a linear classifier (see :class:`SoftmaxLoss`) and

    * ``distance="cosine"`` (default): ``L_C = 1/N sum_i 1/2 (1 - cos(x_i, c_{y_i}))^2``;
    * ``distance="euclidean"``: ``L_C = 1/N sum_i 1/2 ||x_i - c_{y_i}||^2``.

    Wen, Zhang, Li & Qiao, "A Discriminative Feature Learning Approach for Deep
    Face Recognition", ECCV 2016, eq. 2-5, is the euclidean form; the paper sums
    ``L_C`` over the mini-batch, both forms here average it (as ``L_CE`` is
    averaged), so ``lambda_`` does not depend on the batch size. The cosine form
    is the seed code's: pyannote.audio 1.x,
    ``pyannote/audio/embedding/approaches/center_loss.py``, ``CenterDistanceModule``
    (``1 - F.cosine_similarity(x, c, eps=1e-8)``, squared, summed, divided by 2 and
    by the batch size); it ignores the embedding norm, which the euclidean form
    (on un-normalised embeddings) does not.

    The centres ``c`` (``(num_speakers, D)``, drawn from N(0, 1) like the seed's
    ``torch.randn(nclass, nfeat)``) are an ``nn.Parameter`` learnt by the
    optimiser together with the network, as in the seed code. Wen et al. instead
    update them by a separate rule with rate ``alpha`` (eq. 4:
    ``c_j -= alpha * mean_{i: y_i = j} (c_j - x_i)``); with plain SGD the gradient
    step of the euclidean form, ``lr * lambda_ / N * sum (c_j - x_i)``, plays that role.

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        num_speakers: number of training speakers.
        lambda_: weight of the centre term. Default 1.0, the seed's: pyannote.audio
            1.x, ``center_loss.py`` ``CenterLoss(loss_weight=1.0)``, with the cosine
            term. Not re-tuned on validation trials here. Wen et al. report good
            results for 0.001-0.1 with the euclidean term (0.003 on faces); this
            code's earlier default was ``distance="euclidean", lambda_=0.01``, a
            scale-dependent value on un-normalised embeddings.
        distance: ``"cosine"`` (default, the seed's ``CenterDistanceModule``, see
            above) or ``"euclidean"`` (Wen et al.).
        classifier_bias: give the classifier of ``L_CE`` a bias ``b`` (logits
            ``W x + b``). Default False, the seed's: pyannote.audio 1.x
            ``center_loss.py`` ``CenterLoss`` builds its classifier as
            ``Linear(dimension, n_classes, bias=False)`` (logits ``W x``), like its
            ``Classification`` (the ``ce`` loss, :class:`SoftmaxLoss`).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_speakers: int,
        lambda_: float = 1.0,
        distance: str = "cosine",
        classifier_bias: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_speakers, bias=check_bool(None, "classifier_bias", classifier_bias))
        self.lambda_ = check_float(None, "lambda_", lambda_)
        self.distance = check_choice(None, "distance", distance, CENTER_DISTANCES)

    @property
    def classifier_bias(self) -> bool:
        return self.bias

    def reset_head(self) -> None:
        super().reset_head()
        self.centers = nn.Parameter(torch.randn(self.num_speakers, self.embedding_dim))

    def center_term(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """``L_C`` (scalar) of ``(batch, D)`` embeddings and ``(batch,)`` labels."""
        centers = self.centers.float()[labels]
        if self.distance == "cosine":
            cosine = F.cosine_similarity(embeddings, centers, dim=1, eps=_COSINE_EPS)
            return 0.5 * (1.0 - cosine).pow(2).mean()
        return 0.5 * (embeddings - centers).pow(2).sum(dim=1).mean()

    def compute_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return super().compute_loss(embeddings, labels) + self.lambda_ * self.center_term(embeddings, labels)

    def extra_repr(self) -> str:
        return (
            f"{ClassificationLoss.extra_repr(self)}, lambda_={self.lambda_}, distance={self.distance!r}, "
            f"classifier_bias={self.classifier_bias}"
        )
