"""Relational distillation against hand-computed values; its invariances; the teacher gets no gradient."""

import math

import pytest
import torch

from voxmetric.losses.distill import embedding_distillation, relational_distillation, softmax_relational_distillation


def test_value_by_hand_on_three_rows():
    # Student: unit vectors at 0, 90 and 180 degrees: cosines (0, -1, 0) for pairs (01, 02, 12).
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    # Teacher (3-d): cosines 1/sqrt(2) (01), 0 (02), 0 (12).
    teacher = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    # Each unordered pair counts twice among the 6 off-diagonal cells, so the mean over
    # cells is the mean over pairs: ((0 - 1/sqrt 2)^2 + (-1 - 0)^2 + (0 - 0)^2) / 3.
    expected = (0.5 + 1.0 + 0.0) / 3
    assert float(relational_distillation(student, teacher)) == pytest.approx(expected, abs=1e-6)


def test_zero_for_a_rotated_and_rescaled_copy_of_the_teacher():
    torch.manual_seed(0)
    teacher = torch.randn(8, 6)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6))
    student = 3.0 * teacher @ rotation  # same cosines, other coordinates and scale
    assert float(relational_distillation(student, teacher)) == pytest.approx(0.0, abs=1e-10)
    assert float(relational_distillation(torch.randn(8, 4), teacher)) > 0.01


def test_gradient_reaches_the_student_only():
    torch.manual_seed(1)
    student = torch.randn(5, 3, requires_grad=True)
    teacher = torch.randn(5, 7, requires_grad=True)
    relational_distillation(student, teacher).backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert teacher.grad is None


def test_gradient_matches_finite_differences():
    torch.manual_seed(2)
    student = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(4, 5, dtype=torch.float64)
    # float() inside: the loss runs in float32; a float64 check on the formula itself.
    loss = lambda s: relational_distillation(s, teacher)  # noqa: E731
    (grad,) = torch.autograd.grad(loss(student), student)
    h = 1e-3
    for i, j in ((0, 0), (2, 1), (3, 2)):
        bump = torch.zeros_like(student)
        bump[i, j] = h
        numeric = (float(loss(student + bump)) - float(loss(student - bump))) / (2 * h)
        assert math.isclose(float(grad[i, j]), numeric, rel_tol=1e-2, abs_tol=1e-4)


def test_batches_must_match():
    with pytest.raises(ValueError, match="same batch"):
        relational_distillation(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match=">= 2 rows"):
        relational_distillation(torch.randn(1, 3), torch.randn(1, 3))


def test_softmax_relational_against_a_hand_computed_value():
    # Student scores of row 0 with rows 1, 2: cos 0 and cos 1; teacher: cos 1 and cos 0.
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    tau = 0.5
    # Row 0: q = softmax([0, 2]), p = softmax([2, 0]); row 1: S (0, 0) vs T (1, 0);
    # row 2: S (1, 0) vs T (0, 0).
    def kl(p_logits, q_logits):
        p, q = torch.softmax(torch.tensor(p_logits), 0), torch.softmax(torch.tensor(q_logits), 0)
        return float((p * (p.log() - q.log())).sum())
    expected = (kl([2.0, 0.0], [0.0, 2.0]) + kl([2.0, 0.0], [0.0, 0.0]) + kl([0.0, 0.0], [2.0, 0.0])) / 3
    assert float(softmax_relational_distillation(student, teacher, tau)) == pytest.approx(expected, abs=1e-6)


def test_softmax_relational_is_zero_for_the_teachers_scores_and_weighs_near_neighbours():
    torch.manual_seed(3)
    teacher = torch.randn(8, 5)
    rotation, _ = torch.linalg.qr(torch.randn(5, 5))
    assert float(softmax_relational_distillation(teacher @ rotation * 3.0, teacher)) == pytest.approx(0.0, abs=1e-6)
    # Changing an impostor-like (far) score costs less than changing the nearest neighbour's.
    base = torch.tensor([[1.0, 0.0, 0.0], [0.95, 0.31, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    near = base.clone(); near[1] = torch.tensor([0.6, 0.8, 0.0])  # row 0's nearest neighbour moves away
    far = base.clone(); far[3] = torch.tensor([0.3, 0.0, 0.95])  # a far row moves about as much in cosine
    assert (float(softmax_relational_distillation(near, base, 0.1))
            > float(softmax_relational_distillation(far, base, 0.1)))


def test_softmax_relational_checks_its_inputs_and_keeps_the_teacher_out_of_the_gradient():
    with pytest.raises(ValueError, match=">= 3 rows"):
        softmax_relational_distillation(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="temperature"):
        softmax_relational_distillation(torch.randn(4, 3), torch.randn(4, 3), 0.0)
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    softmax_relational_distillation(student, teacher).backward()
    assert student.grad is not None and teacher.grad is None


def test_embedding_distillation_against_hand_computed_values():
    student = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 5.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    expected = (0.0 + (1.0 - 1.0 / math.sqrt(27.0))) / 2
    assert float(embedding_distillation(student, teacher)) == pytest.approx(expected, abs=1e-6)
    # Zero when the student is the padded teacher at any scale; pairwise cosines then match.
    torch.manual_seed(4)
    teacher = torch.randn(6, 4)
    student = torch.nn.functional.pad(teacher, (0, 2)) * 5.0
    assert float(embedding_distillation(student, teacher)) == pytest.approx(0.0, abs=1e-6)
    assert float(relational_distillation(student, teacher)) == pytest.approx(0.0, abs=1e-10)


def test_embedding_distillation_checks_sizes_and_keeps_the_teacher_out_of_the_gradient():
    with pytest.raises(ValueError, match="at least as large as the teacher's, got 3 < 4"):
        embedding_distillation(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="same B"):
        embedding_distillation(torch.randn(2, 3), torch.randn(3, 3))
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    embedding_distillation(student, teacher).backward()
    assert student.grad is not None and teacher.grad is None
