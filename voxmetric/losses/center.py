"""Center loss (Wen et al., 2016)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checks import check_float
from .ce import SoftmaxLoss


class CenterLoss(SoftmaxLoss):
    """Softmax cross-entropy plus a pull of each embedding towards its speaker centre.

    ``L = L_CE + lambda_ * L_C``, ``L_C = 1/N sum_i 1/2 ||x_i - c_{y_i}||^2``

    Wen, Zhang, Li & Qiao, "A Discriminative Feature Learning Approach for Deep
    Face Recognition", ECCV 2016, eq. 2-5. The paper sums ``L_C`` over the
    mini-batch; we average it (as ``L_CE`` is averaged), so ``lambda_`` does not
    depend on the batch size.

    The centres ``c`` (``(num_speakers, D)``) are an ``nn.Parameter`` learnt by
    the optimiser together with the network, as in most re-implementations.
    The paper instead updates them by a separate rule with rate ``alpha``
    (eq. 4: ``c_j -= alpha * mean_{i: y_i = j} (c_j - x_i)``); with plain SGD
    the gradient step ``lr * lambda_ / N * sum (c_j - x_i)`` plays that role.

    Args:
        embedding_dim: size D of the embeddings ``(batch, D)``.
        num_speakers: number of training speakers.
        lambda_: weight of the centre term. Default 0.01 (Wen et al. report
            good results for 0.001-0.1 and use 0.003 on faces; our embeddings are
            un-normalised, so the value is scale dependent). NOT the seed code's
            setting: pyannote.audio 1.x, ``pyannote/audio/embedding/approaches/center_loss.py`` ``CenterLoss`` uses
            ``loss_weight=1.0`` on a *cosine* centre term (``mean_i (1 - cos(x_i,
            c_{y_i}))^2 / 2``), a different formula from this euclidean one; neither the
            formula nor the weight has been re-tuned on validation trials here.
    """

    def __init__(self, embedding_dim: int, num_speakers: int, lambda_: float = 0.01) -> None:
        super().__init__(embedding_dim, num_speakers)
        self.lambda_ = check_float(None, "lambda_", lambda_)

    def reset_head(self) -> None:
        super().reset_head()
        self.centers = nn.Parameter(torch.randn(self.num_speakers, self.embedding_dim))

    def center_term(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """``L_C = mean_i 1/2 ||x_i - c_{y_i}||^2`` (scalar)."""
        centers = self.centers.float()[labels]
        return 0.5 * (embeddings - centers).pow(2).sum(dim=1).mean()

    def compute_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return super().compute_loss(embeddings, labels) + self.lambda_ * self.center_term(embeddings, labels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lambda_={self.lambda_}"
