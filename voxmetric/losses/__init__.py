"""Training losses for speaker embeddings, found by name.

All losses share one call shape, ``loss(embeddings (batch, D), labels (batch,)) -> ()``
(see :mod:`voxmetric.losses.base`). Build one from a config with
:func:`build_loss`; the names are the keys of :data:`LOSSES`:

=============== ============================================ =====================
name            loss                                         reference
=============== ============================================ =====================
``ce``          softmax cross-entropy (linear, no bias)      --
``center``      CE + lambda_ * (cosine) centre pull          Wen et al. 2016
``coco``        congenerous cosine                           Liu et al. 2017
``aam``         additive angular margin (ArcFace)            Deng et al. 2019
``am_softmax``  additive margin softmax (CosFace)            Wang et al. 2018
``subcenter_aam`` sub-center ArcFace                         Deng et al. 2020
``contrastive`` contrastive over all pairs                   Hadsell et al. 2006
``triplet``     triplet over mined triplets                  Schroff et al. 2015
=============== ============================================ =====================

With no parameters, ``ce``, ``center``, ``contrastive`` and ``triplet`` follow the seed code of
Coria et al. (2020), pyannote.audio 1.x (definitions and defaults cited in each class).
"""

from __future__ import annotations

from ..checks import Registry
from .aam import AAMLoss
from .am_softmax import AMSoftmaxLoss
from .base import ClassificationLoss, Loss
from .ce import SoftmaxLoss
from .center import CenterLoss
from .coco import CoCoLoss
from .contrastive import ContrastiveLoss
from .margin import MarginSoftmaxLoss
from .mining import MINING, TripletMiner
from .subcenter import SubCenterAAMLoss
from .triplet import TripletLoss

LOSSES = Registry("loss", {
    "ce": SoftmaxLoss,
    "center": CenterLoss,
    "coco": CoCoLoss,
    "aam": AAMLoss,
    "am_softmax": AMSoftmaxLoss,
    "subcenter_aam": SubCenterAAMLoss,
    "contrastive": ContrastiveLoss,
    "triplet": TripletLoss,
}, structural=("embedding_dim", "num_speakers"))
"""Loss names and their classes; ``embedding_dim`` and ``num_speakers`` come from the trainer."""


def loss_params(name: str) -> dict[str, object]:
    """Hyper-parameters of loss ``name`` and their defaults (``embedding_dim`` etc. excluded)."""
    return LOSSES.parameters(name)


def build_loss(name: str, embedding_dim: int, num_speakers: int, **params: object) -> Loss:
    """Create loss ``name`` for ``(batch, embedding_dim)`` embeddings of ``num_speakers`` speakers.

    ``params`` are the loss's own hyper-parameters (see :func:`loss_params`).
    Pair losses do not use ``num_speakers``. Raises :class:`ConfigError` for an
    unknown name, an unknown parameter, or a bad value.
    """
    return LOSSES.build(name, params, embedding_dim=embedding_dim, num_speakers=num_speakers)


__all__ = [
    "LOSSES",
    "MINING",
    "AAMLoss",
    "AMSoftmaxLoss",
    "CenterLoss",
    "ClassificationLoss",
    "CoCoLoss",
    "ContrastiveLoss",
    "Loss",
    "MarginSoftmaxLoss",
    "SoftmaxLoss",
    "SubCenterAAMLoss",
    "TripletLoss",
    "TripletMiner",
    "build_loss",
    "loss_params",
]
