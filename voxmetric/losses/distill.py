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
"""

from __future__ import annotations

import torch
from torch import Tensor

from .distances import pairwise_distances


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
    # (1 - S) - (1 - T): the same squares as S - T.
    difference = (pairwise_distances(student.float(), "cosine")
                  - pairwise_distances(teacher.detach().float(), "cosine"))
    off_diagonal = ~torch.eye(student.shape[0], dtype=torch.bool, device=student.device)
    return difference[off_diagonal].pow(2).mean()
