"""Shared base classes of the training losses.

Every loss has one call shape, ``loss(embeddings, labels) -> scalar``, with the
input checks done once here (as in pytorch-metric-learning's
``BaseMetricLossFunction``):

* ``embeddings``: float tensor ``(batch, embedding_dim)``, any float dtype; it is
  cast to float32 and the loss runs with autocast disabled, so bf16/fp16
  training keeps a float32 softmax / distance computation;
* ``labels``: integer tensor ``(batch,)`` of speaker indices.

Two class attributes tell the trainer how to feed a loss:

* ``requires_pairs``: batches need K >= 2 chunks per speaker (pair / triplet losses);
* ``is_classification``: the loss owns a speaker head (parameters to optimise with
  the model), knows ``num_speakers`` and offers ``logits``, ``accuracy`` and
  ``resize``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checks import check_int


class Loss(nn.Module):
    """Base of all losses: ``forward(embeddings (batch, dim), labels (batch,)) -> ()``.

    Subclasses implement :meth:`compute_loss`, which receives float32
    embeddings and int64 labels that have already been checked.
    """

    requires_pairs: bool = False
    is_classification: bool = False

    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        self.embedding_dim = check_int(None, "embedding_dim", embedding_dim)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Loss of a batch: ``(batch, embedding_dim)`` float, ``(batch,)`` int -> scalar."""
        self.check_inputs(embeddings, labels)
        # float32 whatever the training precision: logits scaled by s = 10..64 and
        # squared distances lose too much in bf16.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.compute_loss(embeddings.float(), labels.long())

    def compute_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def check_inputs(self, embeddings: Tensor, labels: Tensor) -> None:
        """Raise ``ValueError`` naming the shapes if the batch cannot be used."""
        name = type(self).__name__
        if not torch.is_tensor(embeddings) or not torch.is_floating_point(embeddings):
            raise ValueError(f"{name}: embeddings must be a float tensor, got {_describe(embeddings)}")
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"{name}: embeddings must have shape (batch, {self.embedding_dim}), got {tuple(embeddings.shape)}"
            )
        if not torch.is_tensor(labels) or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(f"{name}: labels must be an integer tensor, got {_describe(labels)}")
        if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"{name}: labels must have shape (batch,) = ({embeddings.shape[0]},) to match embeddings "
                f"{tuple(embeddings.shape)}, got {tuple(labels.shape)}"
            )
        if embeddings.shape[0] == 0:
            raise ValueError(f"{name}: empty batch (embeddings {tuple(embeddings.shape)})")
        if self.requires_pairs and labels.unique().numel() == labels.numel():
            raise ValueError(
                f"{name} needs at least two embeddings of one speaker in the batch (K >= 2 chunks per "
                f"speaker), got {labels.numel()} embeddings of {labels.numel()} distinct speakers"
            )


class ClassificationLoss(Loss):
    """A loss with a speaker head over ``num_speakers`` training speakers.

    Subclasses set their own hyper-parameters, then call :meth:`reset_head`
    (which creates the head parameters) at the end of ``__init__``, and define
    :meth:`logits`. The head belongs to the loss, so the trainer optimises
    ``model.parameters()`` together with ``loss.parameters()``.
    """

    is_classification = True

    def __init__(self, embedding_dim: int, num_speakers: int) -> None:
        super().__init__(embedding_dim)
        self.num_speakers = check_int(None, "num_speakers", num_speakers)

    def reset_head(self) -> None:
        """(Re-)create the head parameters for ``self.num_speakers`` speakers."""
        raise NotImplementedError

    def resize(self, num_speakers: int) -> None:
        """Replace the head by a freshly initialised one over ``num_speakers`` speakers.

        Used when fine-tuning on a new speaker set. The new parameters are new
        objects: build the optimiser after calling this.
        """
        self.num_speakers = check_int(None, "num_speakers", num_speakers)
        device = next(self.parameters()).device
        self.reset_head()
        self.to(device)

    def logits(self, embeddings: Tensor) -> Tensor:
        """Speaker logits ``(batch, num_speakers)`` without any training margin."""
        raise NotImplementedError

    @torch.no_grad()
    def accuracy(self, embeddings: Tensor, labels: Tensor) -> float:
        """Fraction of the batch whose arg-max logit is the true speaker (for logging)."""
        self.check_inputs(embeddings, labels)
        predicted = self.logits(embeddings.float()).argmax(dim=1)
        return (predicted == labels.to(predicted.device)).float().mean().item()

    def check_inputs(self, embeddings: Tensor, labels: Tensor) -> None:
        super().check_inputs(embeddings, labels)
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_speakers:
            raise ValueError(
                f"{type(self).__name__}: labels must lie in [0, {self.num_speakers - 1}] "
                f"(num_speakers={self.num_speakers}), got values in [{low}, {high}]"
            )

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_speakers={self.num_speakers}"


def _describe(value: object) -> str:
    if torch.is_tensor(value):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
