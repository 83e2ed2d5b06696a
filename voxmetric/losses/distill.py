"""Relational distillation: a student learns the teacher's cosine scores between the chunks of a batch.

Verification only ever uses the cosine between two embeddings, so what a student has to
copy from a better teacher is the teacher's score matrix, not its coordinates. With
``S = cos(student_i, student_j)`` and ``T = cos(teacher_i, teacher_j)`` over the ``B`` chunks
of a batch, the loss is

    mean over i != j of (S_ij - T_ij) ** 2

(relational knowledge distillation, Park et al. 2019, with the angle-free "distance"
term taken as the cosine). It needs no projection between the two embedding spaces (the
dimensions may differ), is invariant to each model's embedding scale, and is 0 exactly when
the student scores every pair of the batch as the teacher does. The trainer adds it,
times ``distill.weight``, to the training loss (:class:`voxmetric.training.setup.TrainStep`).

Most pairs of a batch are of different speakers (2,016 of 2,048 with 32 speakers x 2 chunks),
so that mean is mostly about the values of impostor scores, which verification does not
need. :func:`softmax_relational_distillation` asks instead for the teacher's ranking of
each chunk's neighbours: with ``p_i = softmax_j(T_ij / tau)`` and ``q_i = softmax_j(S_ij / tau)``
over ``j != i``, the loss is

    mean over i of KL(p_i || q_i)

and a small temperature ``tau`` puts the weight on each chunk's closest chunks (its
same-speaker chunk and the hardest impostors): the pairs a threshold has to separate
(as in similarity-based distillation of contrastive representations, e.g. SEED, Fang et
al. 2021, which uses a queue where this uses the batch).

:func:`embedding_distillation` copies the coordinates instead: ``mean over i of
1 - cos(s_i, pad(t_i))``, the teacher's embedding zero-padded to the student's size (padding
keeps every cosine between teacher embeddings, so a student at 0 loss scores every pair,
seen or unseen, as the teacher does). Each chunk gets a whole target vector rather than a
row of scores (embedding-level distillation of speaker embeddings, Wang et al. 2019).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .distances import pairwise_distances

def _off_diagonal_cosines(embeddings: Tensor) -> Tensor:
    """``(B, B - 1)``: row ``i`` holds the cosines of chunk ``i`` with every other chunk, in order."""
    size = embeddings.shape[0]
    off_diagonal = ~torch.eye(size, dtype=torch.bool, device=embeddings.device)
    return (1.0 - pairwise_distances(embeddings.float(), "cosine"))[off_diagonal].view(size, size - 1)


def relational_distillation(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared difference of the off-diagonal cosine scores of ``student`` ``(B, Ds)``
    and ``teacher`` ``(B, Dt)`` (module docstring). ``B >= 2``; the teacher gets no gradient.

    >>> s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> t = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    >>> round(float(relational_distillation(s, t)), 6)  # (0 - 1/sqrt(2)) ** 2
    0.5
    """
    if student.shape[0] != teacher.shape[0] or student.shape[0] < 2:
        raise ValueError(f"relational_distillation needs the same batch of >= 2 rows, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    return (_off_diagonal_cosines(student) - _off_diagonal_cosines(teacher.detach())).pow(2).mean()


def softmax_relational_distillation(student: Tensor, teacher: Tensor, temperature: float = 0.1) -> Tensor:
    """Mean over rows of ``KL(softmax(T_i / tau) || softmax(S_i / tau))`` of the off-diagonal
    cosine scores of ``student`` ``(B, Ds)`` and ``teacher`` ``(B, Dt)`` (module docstring).
    ``B >= 3`` (a row needs two neighbours); the teacher gets no gradient.

    >>> s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> round(float(softmax_relational_distillation(s, s, 0.5)), 6)
    0.0
    """
    if student.shape[0] != teacher.shape[0] or student.shape[0] < 3:
        raise ValueError(f"softmax_relational_distillation needs the same batch of >= 3 rows, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    log_q, log_p = (torch.log_softmax(_off_diagonal_cosines(x) / temperature, dim=1)
                    for x in (student, teacher.detach()))
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def embedding_distillation(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean of ``1 - cos(student_i, teacher_i)`` with ``teacher`` ``(B, Dt)`` zero-padded to the
    student's ``(B, Ds)``, ``Ds >= Dt`` (module docstring); the teacher gets no gradient.

    >>> s = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 5.0]])
    >>> t = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> round(float(embedding_distillation(s, t)), 6)  # (0 + (1 - 1 / sqrt(27))) / 2
    0.403775
    """
    if student.shape[0] != teacher.shape[0] or student.ndim != 2 or teacher.ndim != 2:
        raise ValueError(f"embedding_distillation needs two (B, D) batches of the same B, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    if student.shape[1] < teacher.shape[1]:
        raise ValueError(f"embedding_distillation needs a student embedding at least as large as the teacher's, "
                         f"got {student.shape[1]} < {teacher.shape[1]}")
    target = torch.nn.functional.pad(teacher.detach().float(), (0, student.shape[1] - teacher.shape[1]))
    return (1.0 - torch.nn.functional.cosine_similarity(student.float(), target, dim=1)).mean()


DISTILLATIONS = {"relational": relational_distillation, "softmax": softmax_relational_distillation,
                 "embedding": embedding_distillation}
"""The losses of ``distill.kind``, by name."""


def distillation(kind: str, temperature: float = 0.1):
    """The loss ``(student, teacher) -> scalar`` of ``distill.kind`` (``temperature``: softmax only)."""
    if kind not in DISTILLATIONS:
        raise ValueError(f"unknown distillation kind {kind!r} (one of {', '.join(DISTILLATIONS)})")
    if kind == "softmax":
        return functools.partial(softmax_relational_distillation, temperature=temperature)
    return DISTILLATIONS[kind]
