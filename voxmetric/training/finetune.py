"""Fine-tuning a pretrained network without hurting it: a frozen start and a validated start.

Fine-tuning (``init_from``) puts a freshly initialised loss head (e.g. the AAM class
weights of the new speakers) on a pretrained network. Trained together from the first
batch, the random head's large gradients flow into the network and undo what it had
learnt before the head is any good, and a run that only ever got worse shows nothing
wrong. Two remedies, both driven by the config:

* :class:`NetworkFreeze` (``training.freeze_network_batches``): for the first N optimiser
  steps only the head learns; the network's parameters take no gradient and it runs in
  eval mode, so its batch-norm running statistics do not drift either. Its rate after
  that (``optimizer.network_lr_scale``, warm-up restarted) is in :mod:`.optim`.
* :func:`imprint_head` (``training.imprint_head_chunks``): the head does not start random
  at all: each class's weight is the mean direction of the pretrained network's embeddings of
  its chunks (weight imprinting, Qi, Brown & Lowe, "Low-Shot Learning with Imprinted
  Weights", CVPR 2018), so the first gradients that reach the network come from a head
  that already classifies.
* epoch 0 (``validation.at_start``, :func:`validates_at_start`): the starting model is
  validated before the first batch and is the first ``best.pt`` candidate, so a fine-tune
  that never beats it keeps it and says so (:func:`no_improvement_note`).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


class NetworkFreeze:
    """The network held fixed for its first ``batches`` optimiser steps, the head learning alone.

    Call :meth:`apply` before each step: it sets the network's trainability and mode from
    the number of steps done, so a run resumed at any batch is set up exactly as an
    uninterrupted one.
    """

    def __init__(self, network: nn.Module, head: nn.Module, batches: int, loss_name: str = "loss"):
        if batches and not any(p.requires_grad for p in head.parameters()):
            raise ConfigError(f"training.freeze_network_batches is {batches} but loss '{loss_name}' has no "
                              f"parameters of its own to train while the network is frozen: set it to 0 or use "
                              f"a classification loss (aam, am_softmax, ce, ...)")
        self.network = network
        self.batches = batches
        self._frozen: bool | None = None

    def frozen(self, batches_done: int) -> bool:
        """Whether optimiser step ``batches_done + 1`` leaves the network as it is."""
        return batches_done < self.batches

    def apply(self, batches_done: int) -> bool:
        """Set the network up for optimiser step ``batches_done + 1`` (of a training step in
        train mode); True when its parameters' trainability changed, so that a
        DistributedDataParallel wrapper (which syncs only the parameters that require
        gradients when it is built) must be rebuilt."""
        frozen = self.frozen(batches_done)
        self.network.train(not frozen)  # eval while frozen: batch-norm statistics stay pretrained
        if frozen == self._frozen:
            return False
        for parameter in self.network.parameters():
            parameter.requires_grad_(not frozen)
        self._frozen = frozen
        return True


def imprintable(loss: nn.Module) -> bool:
    """Whether ``loss`` has cosine class weights that :func:`imprint_head` can set."""
    from ..losses.margin import MarginSoftmaxLoss

    return isinstance(loss, MarginSoftmaxLoss)


def check_imprintable(loss: nn.Module, loss_name: str = "") -> None:
    """ConfigError unless :func:`imprintable`."""
    if not imprintable(loss):
        raise ConfigError(f"training.imprint_head_chunks needs a loss with cosine class weights (aam, am_softmax, "
                          f"coco, subcenter_aam); loss '{loss_name or type(loss).__name__}' has none: set it to 0")


def imprint_head(model: nn.Module, loss: nn.Module, batches, device: torch.device, progress: bool = False,
                 total: int | None = None) -> float:
    """Set a cosine-classifier head's class weights to the mean direction of ``model``'s
    embeddings of each class's chunks; returns the seconds it took.

    Args:
        model: the (pretrained) network, run in eval mode without gradients; its mode is
            restored afterwards.
        loss: a margin-softmax head (``aam``, ``am_softmax``, ``coco``, ``subcenter_aam``:
            every sub-centre of a speaker starts at the same direction) with ``weight``
            ``(num_speakers * K, D)``.
        batches: ``(waveforms, labels)`` pairs covering every class at least once
            (:meth:`~voxmetric.data.sampler.ChunkBatches.class_batches`); ``total``: their
            number, for the progress bar.

    Raises:
        ConfigError: the loss has no cosine class weights, or a class got no chunk.
    """
    from ..fileio import progress_bar

    check_imprintable(loss)
    started, was_training = time.perf_counter(), model.training
    num_classes = loss.num_speakers
    sums = torch.zeros(num_classes, loss.embedding_dim, dtype=torch.float64)
    counts = torch.zeros(num_classes, dtype=torch.int64)
    model.eval()
    with torch.no_grad():
        for waveforms, labels in progress_bar(batches, enabled=progress, desc="imprinting the loss head",
                                              unit="batch", total=total, leave=False):
            embeddings = nn.functional.normalize(model(waveforms.to(device)).float(), dim=1).cpu()
            sums.index_add_(0, labels, embeddings.double())
            counts += torch.bincount(labels, minlength=num_classes)
    model.train(was_training)
    if bool((counts == 0).any()):
        missing = int((counts == 0).sum())
        raise ConfigError(f"imprinting the loss head: {missing} of {num_classes} classes got no chunk")
    centres = nn.functional.normalize(sums, dim=1).to(loss.weight.dtype)
    per_class = loss.num_prototypes // num_classes
    with torch.no_grad():
        loss.weight.copy_(centres.repeat_interleave(per_class, dim=0).to(loss.weight.device))
    return time.perf_counter() - started


def validates_at_start(config) -> bool:
    """``validation.at_start``, its ``null`` default resolved (true when ``init_from`` is set),
    and only where there are validation trials."""
    at_start = config.validation.at_start
    return bool(config.validation.trials) and (bool(config.init_from) if at_start is None else at_start)


def start_record(eer: float | None) -> dict[str, Any]:
    """The ``metrics.jsonl`` / history record of epoch 0: the starting model, before any batch."""
    return {"epoch": 0, "batch": 0, "train_loss": None, "val_eer": eer, "train_time_s": 0.0,
            "skipped_nonfinite": 0}


def start_eer(history: list[dict[str, Any]]) -> float | None:
    """The starting model's validation EER (%) from the epoch-0 record, or None."""
    return next((r["val_eer"] for r in history if r.get("epoch") == 0 and r.get("val_eer") is not None), None)


def no_improvement_note(history: list[dict[str, Any]], imprinted: bool = True,
                        label_loss: bool = True) -> str | None:
    """What to tell the user when the starting model was validated and no later epoch beat
    it (``best.pt`` is then the starting network, with a fresh head); None otherwise.
    ``imprinted``: whether the head was imprinted (if not, that is suggested first);
    ``label_loss``: false when a teacher alone trained the network (no head to suggest for)."""
    start = start_eer(history)
    later = [r["val_eer"] for r in history if r.get("epoch", 0) > 0 and r.get("val_eer") is not None]
    if start is None or not later or min(later) < start:
        return None
    if not label_loss:
        remedies = ["a lower optimizer.lr", "a teacher better than the starting model on validation"]
    else:
        remedies = ([] if imprinted else ["training.imprint_head_chunks=2 (a head that starts from the network's "
                                          "own embeddings)"]) + [
            "a lower optimizer.lr or optimizer.network_lr_scale", "a longer training.freeze_network_batches",
            "more speakers"]
    return (f"no epoch beat the starting model (EER {start:.2f}%; best after training {min(later):.2f}%): "
            f"checkpoints/best.pt holds the starting network; try {', '.join(remedies[:-1])}, or {remedies[-1]}")
