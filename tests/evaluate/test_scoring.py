"""Embedding files, cosine scoring, adaptive s-norm."""

import json
import warnings

import numpy as np
import pytest

from voxmetric.data.trials import Trial
from voxmetric.errors import TrialsError, VoxmetricError
from voxmetric.evaluate.embeddings import (
    EmbeddingsError,
    EmbeddingTable,
    load_embeddings,
    save_embeddings,
)
from voxmetric.evaluate.scoring import (
    adaptive_snorm,
    adaptive_snorm_indexed,
    cohort_statistics,
    cosine_scores,
    cosine_scores_indexed,
    score_trials,
    speaker_means,
)

# ---------------------------------------------------------------- embedding files


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_embeddings_round_trip(tmp_path, rng, suffix):
    ids = ["id10001/a/00001.wav", "id10002/b/00002.wav", "ünïcode id"]
    matrix = rng.standard_normal((3, 8)).astype(np.float32)
    path = tmp_path / f"emb{suffix}"
    save_embeddings(path, ids, matrix)
    loaded_ids, loaded = load_embeddings(path)
    assert loaded_ids == ids
    assert loaded.dtype == np.float32 and np.array_equal(loaded, matrix)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # atomic: no temp file left
    table = EmbeddingTable.load(path)
    assert np.array_equal(table["id10002/b/00002.wav"], matrix[1])
    assert table.rows(["ünïcode id", ids[0]]).tolist() == [2, 0]


def test_npz_is_loaded_without_pickle(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, ids=np.array([{"evil": 1}], dtype=object), embeddings=np.zeros((1, 2)))
    with pytest.raises(EmbeddingsError, match="emb.npz: unreadable or corrupt embeddings file") as caught:
        load_embeddings(path)
    assert "allow_pickle" not in str(caught.value)  # numpy's advice to load it unsafely is not passed on


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_corrupt_or_missing_embeddings_file(tmp_path, suffix):
    path = tmp_path / f"emb{suffix}"
    with pytest.raises(EmbeddingsError, match="no such file"):
        load_embeddings(path)
    path.write_bytes(b"this is not an embeddings file at all")
    with pytest.raises(EmbeddingsError, match=f"emb\\{suffix}: unreadable or corrupt embeddings file") as caught:
        load_embeddings(path)
    assert "pickle" not in str(caught.value)
    path.unlink()
    path.mkdir()
    with pytest.raises(EmbeddingsError, match=f"emb\\{suffix}: is a directory"):
        load_embeddings(path)
    path.rmdir()
    path.write_bytes(b"")
    with pytest.raises(EmbeddingsError, match="empty"):
        load_embeddings(path)


def test_truncated_npz(tmp_path):
    path = tmp_path / "emb.npz"
    save_embeddings(path, ["a", "b"], np.ones((2, 4)))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(EmbeddingsError, match="corrupt"):
        load_embeddings(path)


def test_embeddings_shape_and_id_errors(tmp_path):
    with pytest.raises(EmbeddingsError, match="2 ids for 3 embedding rows"):
        save_embeddings(tmp_path / "e.npz", ["a", "b"], np.zeros((3, 4)))
    with pytest.raises(EmbeddingsError, match="appears twice"):
        save_embeddings(tmp_path / "e.npz", ["a", "a"], np.zeros((2, 4)))
    with pytest.raises(EmbeddingsError, match=r"\(N, D\)"):
        save_embeddings(tmp_path / "e.npz", ["a"], np.zeros(4))
    with pytest.raises(EmbeddingsError, match="unknown embeddings format '.h5'"):
        save_embeddings(tmp_path / "e.h5", ["a"], np.zeros((1, 4)))
    with pytest.raises(EmbeddingsError, match="NaN"):
        save_embeddings(tmp_path / "e.npz", ["a"], np.full((1, 4), np.nan))
    # a file whose ids do not match its rows
    path = tmp_path / "bad.npz"
    np.savez(path, ids=np.array(["a", "b"]), embeddings=np.zeros((3, 4), np.float32))
    with pytest.raises(EmbeddingsError, match="bad.npz: 2 ids for 3"):
        load_embeddings(path)
    from safetensors.numpy import save_file

    path = tmp_path / "bad.safetensors"
    save_file({"embeddings": np.zeros((2, 4), np.float32)}, str(path), metadata={"ids": json.dumps(["a"])})
    with pytest.raises(EmbeddingsError, match="1 ids for 2"):
        load_embeddings(path)
    save_file({"embeddings": np.zeros((2, 4), np.float32)}, str(path))
    with pytest.raises(EmbeddingsError, match="no 'ids'"):
        load_embeddings(path)


# ---------------------------------------------------------------- cosine


def test_cosine_scores_by_hand():
    enrol = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    test = np.array([[0.0, 2.0], [3.0, 4.0], [-2.0, -2.0]])
    # orthogonal -> 0; same direction -> 1; opposite -> -1
    assert cosine_scores(enrol, test) == pytest.approx([0.0, 1.0, -1.0], abs=1e-6)
    # (1, 0) . (3, 4) / 5 = 0.6
    assert cosine_scores([[1.0, 0.0]], [[3.0, 4.0]]) == pytest.approx([0.6])
    # rows of one table: (1, 0).(3, 4) / 5 = 0.6; (3, 4).(1, 1) / (5 sqrt 2) = 7 / (5 sqrt 2)
    assert cosine_scores_indexed(enrol, [0, 1], [1, 2]) == pytest.approx([0.6, 7 / (5 * np.sqrt(2))])


def test_cosine_indexed_matches_rowwise_over_chunks(rng):
    embeddings = rng.standard_normal((50, 16)).astype(np.float32)
    enrol_rows, test_rows = rng.integers(0, 50, 70_000), rng.integers(0, 50, 70_000)  # > 1 chunk
    expected = cosine_scores(embeddings[enrol_rows], embeddings[test_rows])
    assert np.allclose(cosine_scores_indexed(embeddings, enrol_rows, test_rows), expected, atol=1e-6)


# ---------------------------------------------------------------- s-norm


def loop_snorm(enrol, test, cohort, top_n):
    """Adaptive s-norm written plainly, one trial at a time."""

    def unit(x):
        return x / np.linalg.norm(x)

    def stats(x):
        cohort_scores = sorted((float(unit(x) @ unit(c)) for c in cohort), reverse=True)[:top_n]
        return np.mean(cohort_scores), np.std(cohort_scores)

    out = []
    for e, t in zip(enrol, test):
        score = float(unit(e) @ unit(t))
        (me, se), (mt, st) = stats(e), stats(t)
        out.append(0.5 * ((score - me) / se + (score - mt) / st))
    return np.array(out)


def test_snorm_by_hand():
    # 2-d cohort at angles 0, 90, 180, 270 degrees; enrol at 0 deg, test at 90 deg.
    # enrol's cohort scores: 1, 0, -1, 0 -> top 2: {1, 0}: mean 0.5, std 0.5
    # test's cohort scores:  0, 1, 0, -1 -> top 2: {1, 0}: mean 0.5, std 0.5
    # raw score 0 -> ((0 - 0.5) / 0.5 + (0 - 0.5) / 0.5) / 2 = -1
    cohort = np.array([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    assert adaptive_snorm([[2.0, 0]], [[0, 3.0]], cohort, top_n=2) == pytest.approx([-1.0])


def test_snorm_matches_loop(rng):
    embeddings = rng.standard_normal((12, 6))
    cohort = rng.standard_normal((30, 6))
    enrol_rows, test_rows = rng.integers(0, 12, 40), rng.integers(0, 12, 40)
    enrol, test = embeddings[enrol_rows], embeddings[test_rows]
    expected = loop_snorm(enrol, test, cohort, top_n=7)
    assert np.allclose(adaptive_snorm(enrol, test, cohort, top_n=7), expected, atol=1e-5)
    indexed = adaptive_snorm_indexed(embeddings, enrol_rows, test_rows, cohort, top_n=7)
    assert np.allclose(indexed, expected, atol=1e-5)


def test_cohort_statistics_over_chunks(rng):
    embeddings = rng.standard_normal((2100, 8)).astype(np.float32)  # more than one chunk
    cohort = rng.standard_normal((20, 8)).astype(np.float32)
    mean, std = cohort_statistics(embeddings, cohort, top_n=5)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    scores = unit @ (cohort / np.linalg.norm(cohort, axis=1, keepdims=True)).T
    top = np.sort(scores, axis=1)[:, -5:]
    assert np.allclose(mean, top.mean(1), atol=1e-5) and np.allclose(std, top.std(1), atol=1e-5)


def test_snorm_small_cohort_and_errors(rng):
    embeddings, cohort = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    with pytest.warns(UserWarning, match="exceeds the cohort size 5"):
        clipped = adaptive_snorm_indexed(embeddings, [0, 1], [2, 3], cohort, top_n=400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = adaptive_snorm_indexed(embeddings, [0, 1], [2, 3], cohort, top_n=5)
    assert np.allclose(clipped, whole)
    with pytest.raises(VoxmetricError, match="top_n"):
        adaptive_snorm_indexed(embeddings, [0], [1], cohort, top_n=1)
    with pytest.raises(VoxmetricError, match="dimension"):
        adaptive_snorm_indexed(embeddings, [0], [1], rng.standard_normal((5, 4)))


# ---------------------------------------------------------------- trial lists


def test_score_trials_maps_keys_and_names_missing(rng):
    ids = ["a.wav", "b.wav", "c.wav"]
    table = EmbeddingTable(ids, rng.standard_normal((3, 4)), source="emb.npz")
    trials = [Trial(1, "a.wav", "b.wav"), Trial(0, "c.wav", "a.wav")]
    expected = cosine_scores(table.matrix[[0, 2]], table.matrix[[1, 0]])
    assert np.allclose(score_trials(trials, table), expected, atol=1e-6)
    cohort = rng.standard_normal((10, 4))
    snorm = score_trials(trials, table, cohort=cohort, top_n=3)
    assert np.allclose(snorm, loop_snorm(table.matrix[[0, 2]], table.matrix[[1, 0]], cohort, 3), atol=1e-5)
    bad = trials + [Trial(1, "b.wav", "missing.wav")]
    with pytest.raises(TrialsError, match=r"list.txt, trial 3 \(test\): 'missing.wav' has no embedding in emb.npz"):
        score_trials(bad, table, source="list.txt")


def test_speaker_means():
    embeddings = np.array([[2.0, 0], [0, 5.0], [0, 1.0], [3.0, 0]])
    speakers, means = speaker_means(["u1", "u2", "u3", "u4"], embeddings,
                                    {"u1": "s1", "u2": "s2", "u3": "s2", "u4": "s1"})
    assert speakers == ["s1", "s2"]
    assert np.allclose(means, [[1.0, 0], [0, 1.0]])  # means of unit-length rows


def test_mismatched_matrices_are_voxmetric_errors():
    from voxmetric.errors import ArgumentError
    from voxmetric.evaluate.scoring import cosine_scores

    with pytest.raises(ArgumentError, match=r"enrol \(2, 3\) and test \(2, 4\) must have the same shape"):
        cosine_scores(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ArgumentError, match="test must be an \\(N, D\\) matrix"):
        cosine_scores(np.ones((2, 3)), np.ones(3))
