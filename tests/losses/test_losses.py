"""Tests of voxmetric.losses: each loss against a value computed by hand or by a
plain Python loop on a tiny batch with hand-set weights."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from voxmetric.errors import ConfigError
from voxmetric.losses import (
    LOSSES,
    AAMLoss,
    AMSoftmaxLoss,
    CenterLoss,
    CoCoLoss,
    ContrastiveLoss,
    SoftmaxLoss,
    SubCenterAAMLoss,
    TripletLoss,
    TripletMiner,
    build_loss,
    loss_params,
)

DIM, SPEAKERS = 4, 3
LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
EMBEDDINGS = torch.tensor(
    [
        [1.0, 0.2, 0.0, -0.3],
        [0.8, -0.1, 0.4, 0.0],
        [0.1, 1.2, -0.2, 0.5],
        [-0.3, 0.9, 0.1, 0.2],
        [0.0, -0.4, 1.1, 0.6],
        [0.5, 0.3, 0.7, -0.9],
    ]
)
WEIGHTS = torch.tensor(
    [
        [1.0, 0.0, 0.3, 0.0],
        [0.0, 1.0, 0.0, 0.4],
        [0.2, -0.2, 1.0, 0.0],
    ]
)


# ---------------------------------------------------------------- helpers: plain loops


def dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b))


def cos(a, b):
    return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def cross_entropy(rows, labels):
    """Mean over rows of -log softmax(row)[label], in plain Python."""
    total = 0.0
    for row, label in zip(rows, labels):
        total += -row[int(label)] + math.log(sum(math.exp(z) for z in row))
    return total / len(rows)


def margin_loop(target_fn, scale, weights=WEIGHTS):
    """Margin softmax: target logit s*target_fn(cos), others s*cos."""
    rows = []
    for x, y in zip(EMBEDDINGS, LABELS):
        rows.append([scale * (target_fn(cos(x, w)) if j == int(y) else cos(x, w)) for j, w in enumerate(weights)])
    return cross_entropy(rows, LABELS)


def set_weight(loss, weight):
    with torch.no_grad():
        loss.weight.copy_(weight)
    return loss


def close(value, expected, tol=1e-5):
    value, expected = (v.detach() if torch.is_tensor(v) else v for v in (value, expected))
    assert float(value) == pytest.approx(float(expected), rel=tol, abs=tol)


# ---------------------------------------------------------------- classification losses


def test_ce_default_has_no_bias_like_the_seed():
    # pyannote.audio 1.x Classification(bias=False): logits W x.
    loss = SoftmaxLoss(DIM, SPEAKERS)
    assert loss.classifier.bias is None
    with torch.no_grad():
        loss.classifier.weight.copy_(WEIGHTS)
    rows = [[dot(x, w) for w in WEIGHTS] for x in EMBEDDINGS]
    close(loss(EMBEDDINGS, LABELS), cross_entropy(rows, LABELS))


def test_ce_with_bias_matches_loop():
    loss = SoftmaxLoss(DIM, SPEAKERS, bias=True)
    bias = torch.tensor([0.1, -0.2, 0.05])
    with torch.no_grad():
        loss.classifier.weight.copy_(WEIGHTS)
        loss.classifier.bias.copy_(bias)
    rows = [[dot(x, w) + float(b) for w, b in zip(WEIGHTS, bias)] for x in EMBEDDINGS]
    close(loss(EMBEDDINGS, LABELS), cross_entropy(rows, LABELS))


def test_center_euclidean_is_ce_plus_half_mean_squared_distance():
    loss = CenterLoss(DIM, SPEAKERS, lambda_=0.1, distance="euclidean", classifier_bias=True)
    centers = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    with torch.no_grad():
        loss.classifier.weight.copy_(WEIGHTS)
        loss.classifier.bias.zero_()
        loss.centers.copy_(centers)
    rows = [[dot(x, w) for w in WEIGHTS] for x in EMBEDDINGS]
    pull = sum(0.5 * sum((float(a) - float(c)) ** 2 for a, c in zip(x, centers[int(y)])) for x, y in zip(EMBEDDINGS, LABELS))
    close(loss(EMBEDDINGS, LABELS), cross_entropy(rows, LABELS) + 0.1 * pull / len(LABELS))


def test_coco_matches_loop():
    loss = set_weight(CoCoLoss(DIM, SPEAKERS, scale=7.0), WEIGHTS)
    close(loss(EMBEDDINGS, LABELS), margin_loop(lambda c: c, 7.0))


def test_aam_matches_loop():
    m, s = 0.3, 12.0
    loss = set_weight(AAMLoss(DIM, SPEAKERS, margin_rad=m, scale=s), WEIGHTS)
    # every target angle of this batch is below pi - m: the plain ArcFace branch
    close(loss(EMBEDDINGS, LABELS), margin_loop(lambda c: math.cos(math.acos(c) + m), s))


def test_aam_without_margin_equals_coco_with_same_scale():
    aam = set_weight(AAMLoss(DIM, SPEAKERS, margin_rad=0.0, scale=9.0), WEIGHTS)
    coco = set_weight(CoCoLoss(DIM, SPEAKERS, scale=9.0), WEIGHTS)
    close(aam(EMBEDDINGS, LABELS), coco(EMBEDDINGS, LABELS))


def test_aam_beyond_pi_minus_margin_uses_monotonic_fallback():
    m, s = 0.5, 4.0
    weight = torch.eye(2)
    x = torch.tensor([[-1.0, 0.0]])  # theta = pi to its speaker 0
    loss = set_weight(AAMLoss(2, 2, margin_rad=m, scale=s), weight)
    expected = cross_entropy([[s * (-1.0 - m * math.sin(m)), 0.0]], [0])
    close(loss(x, torch.tensor([0])), expected)


def test_aam_easy_margin_only_where_cosine_positive():
    m, s = 0.4, 5.0
    weight = torch.eye(2)
    x = torch.tensor([[math.cos(2.0), math.sin(2.0)], [math.cos(0.5), math.sin(0.5)]])
    labels = torch.tensor([0, 0])
    loss = set_weight(AAMLoss(2, 2, margin_rad=m, scale=s, easy_margin=True), weight)
    rows = [[s * math.cos(2.0), s * math.sin(2.0)], [s * math.cos(0.5 + m), s * math.sin(0.5)]]
    close(loss(x, labels), cross_entropy(rows, [0, 0]))


def test_am_softmax_matches_loop():
    m, s = 0.25, 20.0
    loss = set_weight(AMSoftmaxLoss(DIM, SPEAKERS, margin=m, scale=s), WEIGHTS)
    close(loss(EMBEDDINGS, LABELS), margin_loop(lambda c: c - m, s))


def test_subcenter_with_one_subcenter_equals_aam():
    sub = set_weight(SubCenterAAMLoss(DIM, SPEAKERS, num_subcenters=1, margin_rad=0.2, scale=11.0), WEIGHTS)
    aam = set_weight(AAMLoss(DIM, SPEAKERS, margin_rad=0.2, scale=11.0), WEIGHTS)
    close(sub(EMBEDDINGS, LABELS), aam(EMBEDDINGS, LABELS))


def test_subcenter_takes_closest_subcenter():
    m, s = 0.2, 11.0
    other = torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    # rows j*K .. j*K + K-1 belong to speaker j (K = 2)
    weight = torch.stack([WEIGHTS, other], dim=1).reshape(2 * SPEAKERS, DIM)
    loss = set_weight(SubCenterAAMLoss(DIM, SPEAKERS, num_subcenters=2, margin_rad=m, scale=s), weight)
    rows = []
    for x, y in zip(EMBEDDINGS, LABELS):
        best = [max(cos(x, WEIGHTS[j]), cos(x, other[j])) for j in range(SPEAKERS)]
        rows.append([s * (math.cos(math.acos(c) + m) if j == int(y) else c) for j, c in enumerate(best)])
    close(loss(EMBEDDINGS, LABELS), cross_entropy(rows, LABELS))


def test_accuracy_counts_argmax_hits():
    loss = set_weight(CoCoLoss(DIM, SPEAKERS), WEIGHTS)
    hits = [max(range(SPEAKERS), key=lambda j: cos(x, WEIGHTS[j])) == int(y) for x, y in zip(EMBEDDINGS, LABELS)]
    assert loss.accuracy(EMBEDDINGS, LABELS) == pytest.approx(sum(hits) / len(hits))


# ---------------------------------------------------------------- contrastive


def pair_distance(a, b, distance, normalize=True):
    if distance == "cosine":
        return 1.0 - cos(a, b)
    if normalize:
        na, nb = math.sqrt(dot(a, a)), math.sqrt(dot(b, b))
        a, b = [float(v) / na for v in a], [float(v) / nb for v in b]
    return math.sqrt(sum((float(u) - float(v)) ** 2 for u, v in zip(a, b)))


@pytest.mark.parametrize("reduction", ["all_pairs", "separate"])
@pytest.mark.parametrize(
    "distance, margin, normalize",
    [("cosine", 0.6, True), ("cosine", None, True), ("euclidean", 1.2, True), ("euclidean", 1.5, False)],
)
def test_contrastive_matches_pair_loop(distance, margin, normalize, reduction):
    params = {} if margin is None else {"margin": margin}
    loss = ContrastiveLoss(DIM, distance=distance, normalize=normalize, reduction=reduction, **params)
    m = 0.4 if margin is None else margin
    positives, negatives = [], []
    for i, j in itertools.combinations(range(len(LABELS)), 2):
        d = pair_distance(EMBEDDINGS[i], EMBEDDINGS[j], distance, normalize)
        if LABELS[i] == LABELS[j]:
            positives.append(0.5 * d**2)
        else:
            negatives.append(0.5 * max(0.0, m - d) ** 2)
    assert any(negatives)  # the batch exercises the hinge
    if reduction == "all_pairs":
        expected = (sum(positives) + sum(negatives)) / (len(positives) + len(negatives))
    else:
        expected = sum(positives) / len(positives) + sum(negatives) / len(negatives)
    close(loss(EMBEDDINGS, LABELS), expected)


# ---------------------------------------------------------------- triplet mining

# 1-D embeddings on a line, raw euclidean distance |x_i - x_j|; values in eighths
# so that every distance is exact. Speakers A = {0, 1, 4}, B = {2, 3}.
LINE = torch.tensor([[0.0], [2.0], [3.0], [8.0], [-3.0]]) / 8
LINE_LABELS = torch.tensor([0, 0, 1, 1, 0])
LINE_MARGIN = 2 / 8
# fmt: off
EXPECTED_TRIPLETS = {
    # d_an < d_ap + margin
    "all": [(0, 1, 2), (0, 4, 2), (1, 0, 2), (1, 4, 2), (1, 4, 3),
            (2, 3, 0), (2, 3, 1), (2, 3, 4), (3, 2, 1), (4, 1, 2)],
    # per anchor: farthest positive, closest negative
    "hard": [(0, 4, 2), (1, 4, 2), (2, 3, 1), (3, 2, 1), (4, 1, 2)],
    # per (a, p): closest n with d_ap < d_an < d_ap + margin; (0,4,2) has d_an == d_ap
    # and is not semi-hard, (1, 0) and (4, 0) have no semi-hard negative
    "semi_hard": [(0, 1, 2), (1, 4, 3), (2, 3, 4), (3, 2, 1), (4, 1, 2)],
}
# fmt: on


def line_miner(mining):
    return TripletMiner(mining=mining, margin=LINE_MARGIN, distance="euclidean", normalize=False)


def brute_force_triplets(mining, x, labels, margin):
    """The mining definitions, applied literally with loops."""
    n = len(labels)
    d = [[abs(float(x[i]) - float(x[j])) for j in range(n)] for i in range(n)]
    pos = {a: [p for p in range(n) if p != a and labels[p] == labels[a]] for a in range(n)}
    neg = {a: [q for q in range(n) if labels[q] != labels[a]] for a in range(n)}
    out = []
    for a in range(n):
        if mining == "hard":
            if pos[a] and neg[a]:
                out.append((a, max(pos[a], key=lambda p: d[a][p]), min(neg[a], key=lambda q: d[a][q])))
            continue
        for p in pos[a]:
            if mining == "all":
                out += [(a, p, q) for q in neg[a] if d[a][q] < d[a][p] + margin]
            else:
                semi = [q for q in neg[a] if d[a][p] < d[a][q] < d[a][p] + margin]
                if semi:
                    out.append((a, p, min(semi, key=lambda q: d[a][q])))
    return out


@pytest.mark.parametrize("mining", ["all", "hard", "semi_hard"])
def test_miner_returns_exactly_the_defined_triplets(mining):
    anchors, positives, negatives = line_miner(mining)(LINE, LINE_LABELS)
    assert anchors.dtype == positives.dtype == negatives.dtype == torch.int64
    got = list(zip(anchors.tolist(), positives.tolist(), negatives.tolist()))
    assert got == EXPECTED_TRIPLETS[mining]
    assert got == brute_force_triplets(mining, LINE[:, 0], LINE_LABELS.tolist(), LINE_MARGIN)


def test_semi_hard_picks_closest_of_several_semi_hard_negatives():
    x = torch.tensor([[0.0], [2.0], [3.5], [2.5], [3.0]]) / 8  # A = {0, 1}, B = {2, 3, 4}
    labels = torch.tensor([0, 0, 1, 1, 1])
    got = list(zip(*[t.tolist() for t in line_miner("semi_hard")(x, labels)]))
    # for (0, 1): d_ap = 2, negatives at 3.5, 2.5, 3 are all in (2, 4): the closest is 3
    assert [t for t in got if t[:2] == (0, 1)] == [(0, 1, 3)]
    assert got == brute_force_triplets("semi_hard", x[:, 0], labels.tolist(), LINE_MARGIN)


@pytest.mark.parametrize(
    "mining, reduction, expected_eighths",
    [
        ("all", "violating", 26 / 10),
        ("all", "all_triplets", 26 / 18),
        ("hard", "all_triplets", 16 / 5),
        ("hard", "violating", 16 / 5),
        ("semi_hard", "all_triplets", 5 / 5),
        ("semi_hard", "violating", 5 / 5),
    ],
)
def test_triplet_loss_is_mean_over_mined_triplets(mining, reduction, expected_eighths):
    # by hand (eighths): all: 1+2+3+6+1+4+6+1+1+1 = 26 over the 10 violating triplets,
    # or over all 18 valid ones (A's 3 anchors x 2 positives x 2 negatives + B's 2 x 1 x 3);
    # hard: 2+6+6+1+1 over 5 (none is 0); semi_hard: each of its 5 triplets has
    # d_an - d_ap = 1, loss 1
    loss = TripletLoss(1, mining=mining, margin=LINE_MARGIN, distance="euclidean", normalize=False,
                       reduction=reduction)
    close(loss(LINE, LINE_LABELS), expected_eighths / 8)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_triplet_loss_matches_loop_over_mined_triplets(distance):
    loss = TripletLoss(DIM, mining="hard", margin=0.3, distance=distance)
    anchors, positives, negatives = loss.miner(EMBEDDINGS, LABELS)
    terms = [
        max(0.0, pair_distance(EMBEDDINGS[a], EMBEDDINGS[p], distance) - pair_distance(EMBEDDINGS[a], EMBEDDINGS[n], distance) + 0.3)
        for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist())
    ]
    close(loss(EMBEDDINGS, LABELS), sum(terms) / len(terms))


def test_triplet_without_mined_triplets_is_zero_and_differentiable():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], requires_grad=True)
    value = TripletLoss(2, mining="all", margin=0.1)(x, torch.tensor([0, 0, 1, 1]))
    value.backward()
    assert value.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


# ---------------------------------------------------------------- seed-code defaults, by hand

# Four 2-D embeddings of speakers [0, 0, 1, 1], chosen for exact cosines: their unit
# vectors are (1, 0), (0.6, 0.8), (0, 1), (-0.6, 0.8). The distances 1 - cos:
#   same speaker:      d01 = 0.4, d23 = 0.2
#   different speaker: d02 = 1.0, d03 = 1.6, d12 = 0.2, d13 = 0.72
SQUARE = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0], [-3.0, 4.0]])
SQUARE_LABELS = torch.tensor([0, 0, 1, 1])


def test_contrastive_default_is_seed_all_pairs_mean_with_margin_0_4():
    # 1/(2P) sum over the 6 pairs: d^2 for the 2 same-speaker pairs, max(0, 0.4 - d)^2 for
    # the 4 others, of which only d12 = 0.2 is inside the margin
    expected = (0.4**2 + 0.2**2 + (0.4 - 0.2) ** 2 + 0.0 + 0.0 + 0.0) / (2 * 6)  # 0.02
    close(build_loss("contrastive", embedding_dim=2, num_speakers=2)(SQUARE, SQUARE_LABELS), expected, tol=1e-6)


def test_contrastive_separate_with_margin_0_5_is_the_earlier_default():
    # 1/2 mean of the 2 positive d^2 + 1/2 mean of the 4 negative max(0, 0.5 - d)^2
    # (only d12 = 0.2 is inside the margin)
    expected = 0.5 * (0.4**2 + 0.2**2) / 2 + 0.5 * (0.5 - 0.2) ** 2 / 4  # 0.06125
    loss = ContrastiveLoss(2, margin=0.5, reduction="separate")
    close(loss(SQUARE, SQUARE_LABELS), expected, tol=1e-6)


def test_triplet_default_is_seed_mean_over_all_triplets_with_margin_0_4():
    # the 8 valid (a, p, n) and max(0, d_ap - d_an + 0.4):
    #   (0,1,2) 0.4-1.0  (0,1,3) 0.4-1.6  (2,3,0) 0.2-1.0  (3,2,0) 0.2-1.6  (3,2,1) 0.2-0.72: all < -0.4, 0
    #   (1,0,2) 0.4 - 0.2 + 0.4 = 0.6   (1,0,3) 0.4 - 0.72 + 0.4 = 0.08   (2,3,1) 0.2 - 0.2 + 0.4 = 0.4
    expected = (0.6 + 0.08 + 0.4) / 8  # 0.135, zeros included
    close(build_loss("triplet", embedding_dim=2, num_speakers=2)(SQUARE, SQUARE_LABELS), expected, tol=1e-6)


def test_triplet_violating_with_margin_0_2_is_the_earlier_default():
    # with margin 0.2 only (1,0,2): 0.4 - 0.2 + 0.2 = 0.4 and (2,3,1): 0.2 - 0.2 + 0.2 = 0.2
    # are > 0 ((1,0,3): 0.4 - 0.72 + 0.2 < 0); the mean is over those 2
    loss = TripletLoss(2, margin=0.2, mining="all", reduction="violating")
    close(loss(SQUARE, SQUARE_LABELS), (0.4 + 0.2) / 2, tol=1e-6)


def center_with(loss, weight, centers, bias=None):
    with torch.no_grad():
        loss.classifier.weight.copy_(weight)
        if bias is not None:
            loss.classifier.bias.copy_(bias)
        loss.centers.copy_(centers)
    return loss


# identity classifier (logits = x) and centres c0 = (4, 3), c1 = (0, 1): the cosines to
# the own centre are 0.8, 0.96, 1.0, 0.8
SQUARE_CENTERS = torch.tensor([[4.0, 3.0], [0.0, 1.0]])


def test_center_default_is_seed_cosine_term_weight_1_without_bias():
    loss = build_loss("center", embedding_dim=2, num_speakers=2)
    assert loss.classifier.bias is None
    center_with(loss, torch.eye(2), SQUARE_CENTERS)
    ce = cross_entropy([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0], [-3.0, 4.0]], [0, 0, 1, 1])
    pull = (0.2**2 + 0.04**2 + 0.0**2 + 0.2**2) / 2 / 4  # mean of (1 - cos)^2 / 2 = 0.0102
    close(loss(SQUARE, SQUARE_LABELS), ce + 1.0 * pull, tol=1e-6)


def test_center_euclidean_weight_0_01_with_bias_is_the_earlier_default():
    loss = CenterLoss(2, 2, distance="euclidean", lambda_=0.01, classifier_bias=True)
    center_with(loss, torch.eye(2), SQUARE_CENTERS, bias=torch.tensor([0.1, -0.2]))
    ce = cross_entropy([[1.1, -0.2], [0.7, 0.6], [0.1, 1.8], [-2.9, 3.8]], [0, 0, 1, 1])
    # x - c: (-3, -3), (-3.4, -2.2), (0, 1), (-3, 3): squared norms 18, 16.4, 1, 18
    pull = (18.0 + 16.4 + 1.0 + 18.0) / 2 / 4  # 6.675
    close(loss(SQUARE, SQUARE_LABELS), ce + 0.01 * pull, tol=1e-6)


def test_center_cosine_term_ignores_embedding_scale():
    loss = center_with(CenterLoss(2, 2), torch.zeros(2, 2), SQUARE_CENTERS)
    close(loss.center_term(SQUARE * 10.0, SQUARE_LABELS), loss.center_term(SQUARE, SQUARE_LABELS), tol=1e-6)


# ---------------------------------------------------------------- numerics, dtypes, heads


def classification_losses():
    return [build_loss(name, DIM, SPEAKERS) for name, cls in LOSSES.items() if cls.is_classification]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_finite_with_duplicates(name):
    loss = build_loss(name, DIM, SPEAKERS)
    x = EMBEDDINGS.clone()
    x[1] = x[0]  # an identical same-speaker pair: zero distance
    x = x.requires_grad_()
    loss(x, LABELS).backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in loss.parameters())


@pytest.mark.parametrize("cls", [AAMLoss, SubCenterAAMLoss])
@pytest.mark.parametrize("sign", [1.0, -1.0])  # theta = 0 exactly, and theta = pi
def test_aam_gradient_finite_at_theta_zero_and_pi(cls, sign):
    loss = cls(DIM, SPEAKERS, margin_rad=0.2)
    weight = loss.weight.detach()[0]  # speaker 0 (its first sub-centre)
    x = torch.stack([sign * weight, EMBEDDINGS[2]]).requires_grad_()
    value = loss(x, torch.tensor([0, 1]))
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(x.grad).all() and torch.isfinite(loss.weight.grad).all()


def test_aam_gradient_finite_near_pi():
    loss = set_weight(AAMLoss(2, 2, margin_rad=0.5), torch.eye(2))
    x = torch.tensor([[-1.0, 1e-4], [-1.0, -1e-3]], requires_grad=True)
    loss(x, torch.tensor([0, 0])).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_input_computes_in_float32(name, dtype):
    torch.manual_seed(0)
    loss = build_loss(name, DIM, SPEAKERS)
    x = EMBEDDINGS.to(dtype).requires_grad_()
    value = loss(x, LABELS)
    assert value.dtype == torch.float32 and value.dim() == 0
    close(value, loss(x.detach().float(), LABELS), tol=1e-6)
    value.backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_autocast_does_not_lower_loss_precision(name):
    loss = build_loss(name, DIM, SPEAKERS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(EMBEDDINGS, LABELS)
    assert value.dtype == torch.float32
    close(value, loss(EMBEDDINGS, LABELS), tol=1e-6)


@pytest.mark.parametrize("loss", classification_losses(), ids=lambda l: type(l).__name__)
def test_resize_recreates_a_trainable_head(loss):
    loss.resize(7)
    assert loss.num_speakers == 7
    assert loss.logits(EMBEDDINGS).shape == (6, 7)
    labels = torch.tensor([0, 6, 1, 5, 2, 4])
    before = [p.detach().clone() for p in loss.parameters()]
    optimiser = torch.optim.SGD(loss.parameters(), lr=0.5)
    loss(EMBEDDINGS, labels).backward()
    optimiser.step()
    assert all(p.requires_grad for p in loss.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, loss.parameters()))
    with pytest.raises(ValueError, match=r"\[0, 6\]"):
        loss(EMBEDDINGS, torch.tensor([0, 7, 1, 1, 2, 2]))


def test_head_shapes():
    assert SoftmaxLoss(DIM, 5).classifier.weight.shape == (5, DIM)
    assert CenterLoss(DIM, 5).centers.shape == (5, DIM)
    assert AAMLoss(DIM, 5).weight.shape == (5, DIM)
    assert SubCenterAAMLoss(DIM, 5, num_subcenters=3).weight.shape == (15, DIM)
    sub = SubCenterAAMLoss(DIM, 5, num_subcenters=3)
    sub.resize(2)
    assert sub.weight.shape == (6, DIM)


# ---------------------------------------------------------------- interface, validation, registry


def test_flags():
    pairs = {name for name, cls in LOSSES.items() if cls.requires_pairs}
    classification = {name for name, cls in LOSSES.items() if cls.is_classification}
    assert pairs == {"contrastive", "triplet"}
    assert classification == {"ce", "center", "coco", "aam", "am_softmax", "subcenter_aam"}


@pytest.mark.parametrize(
    "embeddings, labels, message",
    [
        (torch.zeros(6, 5), LABELS, r"\(batch, 4\), got \(6, 5\)"),
        (torch.zeros(6), LABELS, r"got \(6,\)"),
        (torch.zeros(6, 4, dtype=torch.long), LABELS, "float tensor"),
        (EMBEDDINGS, LABELS.float(), "integer tensor"),
        (EMBEDDINGS, LABELS[:5], r"\(6,\) to match embeddings \(6, 4\), got \(5,\)"),
        (EMBEDDINGS, torch.tensor([0, 0, 1, 1, 2, -1]), r"\[-1, 2\]"),
    ],
)
def test_bad_inputs_raise_value_error(embeddings, labels, message):
    with pytest.raises(ValueError, match=message):
        AAMLoss(DIM, SPEAKERS)(embeddings, labels)


@pytest.mark.parametrize("name", ["contrastive", "triplet"])
def test_pair_losses_reject_batches_without_pairs(name):
    with pytest.raises(ValueError, match="K >= 2"):
        build_loss(name, DIM, SPEAKERS)(EMBEDDINGS[::2], LABELS[::2])


def test_build_loss_passes_params_and_defaults():
    loss = build_loss("aam", 8, 10, margin_rad=0.2)
    assert (loss.margin_rad, loss.scale, loss.num_speakers, loss.embedding_dim) == (0.2, 10.0, 10, 8)
    assert build_loss("triplet", 8, 10, mining="semi_hard").miner.mining == "semi_hard"
    assert loss_params("am_softmax") == {"margin": 0.2, "scale": 30.0}
    assert loss_params("contrastive") == {"distance": "cosine", "margin": 0.4, "normalize": True,
                                          "reduction": "all_pairs"}
    assert loss_params("triplet") == {"mining": "all", "margin": 0.4, "distance": "cosine", "normalize": True,
                                      "reduction": "all_triplets"}
    assert loss_params("center") == {"lambda_": 1.0, "distance": "cosine", "classifier_bias": False}


def test_unknown_loss_name_lists_allowed():
    with pytest.raises(ConfigError, match=r"unknown loss 'arcface'.*'aam'.*'triplet'"):
        build_loss("arcface", 8, 10)


def test_unknown_param_is_named():
    with pytest.raises(ConfigError, match=r"unknown parameter 'margin' for loss 'aam'.*'margin_rad'"):
        build_loss("aam", 8, 10, margin=0.2)
    with pytest.raises(ConfigError, match=r"unknown parameter 'num_subcenters' for loss 'triplet'; allowed: 'mining'"):
        build_loss("triplet", 8, 10, num_subcenters=3)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("triplet", {"mining": "semihard"}, r"mining must be one of .*'semi_hard'.*, got 'semihard'"),
        ("triplet", {"distance": "l2"}, r"distance must be one of 'cosine', 'euclidean', got 'l2'"),
        ("contrastive", {"distance": "cosine", "normalize": False}, "normalize=False"),
        ("aam", {"margin_rad": 28.6}, r"28.6.*degrees.*0.4992"),
        ("aam", {"scale": 0}, r"scale must be > 0, got 0"),
        ("am_softmax", {"margin": -0.1}, r"margin must be >= 0, got -0.1"),
        ("subcenter_aam", {"num_subcenters": 0}, r"num_subcenters must be an integer >= 1, got 0"),
        ("center", {"lambda_": "0.1"}, r"lambda_ must be a finite number, got '0.1'"),
        ("center", {"distance": "l2"}, r"distance must be one of 'cosine', 'euclidean', got 'l2'"),
        ("center", {"classifier_bias": "no"}, r"classifier_bias must be true or false, got 'no'"),
        ("contrastive", {"reduction": "mean"}, r"reduction must be one of 'all_pairs', 'separate', got 'mean'"),
        ("contrastive", {"margin": -0.4}, r"margin must be >= 0, got -0.4"),
        ("triplet", {"reduction": "nonzero"}, r"reduction must be one of 'all_triplets', 'violating', got 'nonzero'"),
    ],
)
def test_bad_param_values_raise_config_error(name, params, message):
    with pytest.raises(ConfigError, match=message):
        build_loss(name, 8, 10, **params)


# ---------------------------------------------------------------- pytorch-metric-learning agreement


@pytest.fixture
def pml():
    import pytorch_metric_learning  # the test extra's reference implementation

    return pytorch_metric_learning


def random_batch(seed=0, speakers=4, per_speaker=3, dim=DIM):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(speakers * per_speaker, dim, generator=generator)
    return x, torch.arange(speakers).repeat_interleave(per_speaker)


def test_pml_arcface_agrees_with_margin_in_degrees(pml):
    from pytorch_metric_learning.losses import ArcFaceLoss

    x, y = random_batch()
    ours = AAMLoss(DIM, 4, margin_rad=0.3, scale=10.0)
    theirs = ArcFaceLoss(4, DIM, margin=math.degrees(0.3), scale=10.0)
    with torch.no_grad():
        theirs.W.copy_(ours.weight.T)  # PML stores (embedding_size, num_classes)
    close(ours(x, y), theirs(x, y))


def test_pml_cosface_agrees(pml):
    from pytorch_metric_learning.losses import CosFaceLoss

    x, y = random_batch(seed=1)
    ours = AMSoftmaxLoss(DIM, 4, margin=0.25, scale=20.0)
    theirs = CosFaceLoss(4, DIM, margin=0.25, scale=20.0)
    with torch.no_grad():
        theirs.W.copy_(ours.weight.T)
    close(ours(x, y), theirs(x, y))


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_pml_triplet_all_agrees(pml, distance):
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss

    x, y = random_batch(seed=2)
    their_distance = CosineSimilarity() if distance == "cosine" else LpDistance(normalize_embeddings=True)
    # PML averages over the non-zero triplets of all valid ones (AvgNonZeroReducer);
    # on a cosine *similarity* it uses s_an - s_ap + margin = d_ap - d_an + margin
    theirs = TripletMarginLoss(margin=0.2, distance=their_distance)
    close(TripletLoss(DIM, mining="all", margin=0.2, distance=distance, reduction="violating")(x, y), theirs(x, y))


def test_pml_batch_hard_miner_agrees(pml):
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner
    from pytorch_metric_learning.reducers import MeanReducer

    x, y = random_batch(seed=3)
    ours = TripletMiner("hard", distance="cosine")(x, y)
    theirs = BatchHardMiner(distance=CosineSimilarity())(x, y)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    # batch-hard averaged over all anchors: PML with a MeanReducer
    pml_loss = TripletMarginLoss(margin=0.2, distance=CosineSimilarity(), reducer=MeanReducer())
    close(TripletLoss(DIM, mining="hard", margin=0.2)(x, y), pml_loss(x, y, theirs))


def test_pml_semihard_miner_contains_ours(pml):
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.miners import TripletMarginMiner

    x, y = random_batch(seed=4, speakers=5, per_speaker=4)
    ours = list(zip(*[t.tolist() for t in TripletMiner("semi_hard", margin=0.3)(x, y)]))
    # PML keeps every semi-hard triplet; we keep the closest negative per (a, p)
    theirs = list(zip(*[t.tolist() for t in TripletMarginMiner(0.3, "semihard", distance=CosineSimilarity())(x, y)]))
    assert ours and set(ours) <= set(theirs)
    distances = 1 - torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(x).T
    for a, p, n in ours:
        candidates = [q for (a2, p2, q) in theirs if (a2, p2) == (a, p)]
        assert distances[a, n] == min(distances[a, q] for q in candidates)
    assert {(a, p) for a, p, _ in theirs} == {(a, p) for a, p, _ in ours}


def test_pml_contrastive_positive_term_agrees_up_to_half(pml):
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import ContrastiveLoss as PMLContrastiveLoss

    # PML's contrastive hinge is not squared: relu(d - pos_margin) + relu(neg_margin - d).
    # Values coincide only for the pull term on squared distances, with every
    # negative pair beyond the margin (both negative terms 0).
    x, y = random_batch(seed=5, speakers=3, per_speaker=2)
    x = x + 20.0 * torch.nn.functional.one_hot(y, DIM).float()
    theirs = PMLContrastiveLoss(pos_margin=0.0, neg_margin=0.1, distance=LpDistance(normalize_embeddings=True, power=2))
    ours = ContrastiveLoss(DIM, distance="euclidean", margin=math.sqrt(0.1), reduction="separate")
    close(ours(x, y), 0.5 * float(theirs(x, y)))
