"""The front-end chosen on validation at the end of training, stored in the checkpoints and used by `embed`."""

import json

import numpy as np
import pytest

from voxmetric import audio
from voxmetric.cli import main
from voxmetric.errors import ConfigError
from voxmetric.evaluate.embeddings import load_embeddings
from voxmetric.inference.checkpoint import load_checkpoint
from voxmetric.inference.frontend import Frontend, FrontendSettings
from voxmetric.inference.loading import load_network
from voxmetric.training.config import load_config
from voxmetric.training.frontend_select import (SELECTION_KEY, CandidateResult, candidate_settings, choose,
                                                windows_per_minute)
from voxmetric.training.setup import validate
from voxmetric.training.trainer import train

from .test_trainer import _config, _speaker_audio, tiny_corpus  # noqa: F401 (a fixture)

# The config's own 3 s windows embed the 1.5 s validation files whole, so they tie with the
# whole-utterance candidate, which is cheaper: the config's own setting can never be chosen.
CANDIDATES = ["frontend.window_s=3.0", "frontend.step_s=0.1",
              "validation.frontend_candidates=[{window_s: null}, {window_s: 0.5, step_s: 0.25}, "
              "{window_s: 1.0, step_s: 0.5}]"]


def _selections(exp):
    return [r for r in map(json.loads, (exp / "metrics.jsonl").read_text().splitlines()) if SELECTION_KEY in r]


def _settings(row) -> FrontendSettings:
    return FrontendSettings(vad=False, window_s=row["window_s"], step_s=row["step_s"])


def test_training_stores_the_lowest_validation_eer_and_embed_uses_it(tmp_path, tiny_corpus):  # noqa: F811
    config = load_config(_config(tmp_path, tiny_corpus), CANDIDATES)
    result = train(config, tmp_path / "exp", progress=False)
    (record,) = _selections(tmp_path / "exp")
    rows = record[SELECTION_KEY]
    assert [(r["window_s"], r["step_s"], r["from_config"]) for r in rows] == [
        (3.0, 0.1, True), (None, 0.1, False), (0.5, 0.25, False), (1.0, 0.5, False)]
    assert rows[0]["val_eer"] == result.best_eer  # the best epoch's validation, measured again
    network, _ = load_network(result.best_checkpoint)
    for row in rows:  # every EER is the one plain validation gives with that setting
        overrides = [f"frontend.window_s={'null' if row['window_s'] is None else row['window_s']}",
                     f"frontend.step_s={row['step_s']}"]
        assert validate(network, load_config(_config(tmp_path, tiny_corpus), overrides), "cpu") == row["val_eer"]
    winner = min(range(len(rows)), key=lambda i: (rows[i]["val_eer"], rows[i]["windows_per_minute"], i))
    assert winner != 0 and record["frontend_chosen"] == _settings(rows[winner]).to_dict()
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(tmp_path / "exp" / "checkpoints" / name)
        assert state["frontend"] == record["frontend_chosen"] and state[SELECTION_KEY] == record

    # embed reads the stored setting; --window / --step still override it
    wav = tmp_path / "long.wav"  # 4.5 s: the candidates' windows all embed it differently
    audio.write(wav, np.concatenate([_speaker_audio(4, 0), _speaker_audio(5, 1), _speaker_audio(4, 2)]))

    def embed(*options):
        out = tmp_path / f"emb{len(list(tmp_path.glob('emb*.npz')))}.npz"
        assert main(["embed", result.best_checkpoint, str(wav), "--no-vad", "--out", str(out), "-q", *options]) == 0
        return load_embeddings(out)[1][0]

    chosen = _settings(rows[winner])
    explicit = ["--window", "0"] if chosen.window_s is None else ["--window", str(chosen.window_s)]
    default = embed()
    np.testing.assert_array_equal(default, embed(*explicit, "--step", str(chosen.step_s)))
    overridden = embed("--window", "3", "--step", "0.1")
    np.testing.assert_array_equal(overridden, Frontend(network, _settings(rows[0])).embed(str(wav))[0])
    assert np.abs(overridden - default).max() > 1e-4


def test_disabled_selection_keeps_the_config_and_the_cli_chooses_later(tmp_path, tiny_corpus, capsys):  # noqa: F811
    path = _config(tmp_path, tiny_corpus, epochs=1)
    exp = tmp_path / "exp"
    train(load_config(path, ["validation.select_frontend=false"]), exp, progress=False)
    state = load_checkpoint(exp / "checkpoints" / "best.pt")
    assert state["frontend"] == {"vad": False, "window_s": 1.0, "step_s": 0.5, "rms_dbfs": None}
    assert SELECTION_KEY not in state and not _selections(exp)
    capsys.readouterr()
    assert main(["train", str(path), "--out", str(exp), "--select-frontend-only", "-q"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("front-end chosen on validation: ") and "1 s/0.5 s windows (config)" in printed
    (record,) = _selections(exp)
    assert load_checkpoint(exp / "checkpoints" / "best.pt")["frontend"] == record["frontend_chosen"]
    assert load_checkpoint(exp / "checkpoints" / "last.pt")[SELECTION_KEY] == record

    assert main(["train", str(path), "--out", str(tmp_path / "none"), "--select-frontend-only"]) == 1
    assert "last.pt: no such checkpoint" in capsys.readouterr().err
    assert main(["train", str(path), "--out", str(exp), "--select-frontend-only", "--resume"]) == 2
    capsys.readouterr()
    no_trials = ["--set", "validation.trials=null"]
    assert main(["train", str(path), "--out", str(exp), "--select-frontend-only", *no_trials]) == 1
    assert "validation.trials is required" in capsys.readouterr().err


def test_resume_selects_again_only_after_more_training(tmp_path, tiny_corpus):  # noqa: F811
    exp = tmp_path / "exp"
    path = _config(tmp_path, tiny_corpus, epochs=1)
    train(load_config(path), exp, progress=False)
    last = exp / "checkpoints" / "last.pt"
    before = (last.read_bytes(), (exp / "metrics.jsonl").read_text())
    train(load_config(path), exp, resume=True, progress=False)  # finished already: nothing trained, nothing chosen
    assert (last.read_bytes(), (exp / "metrics.jsonl").read_text()) == before
    train(load_config(path, ["validation.frontend_candidates=[{window_s: null}]"]), exp, resume=True, progress=False)
    assert [len(r[SELECTION_KEY]) for r in _selections(exp)] == [4, 2]  # other candidates: chosen again
    train(load_config(_config(tmp_path, tiny_corpus, epochs=2)), exp, resume=True, progress=False)
    records = _selections(exp)
    assert [r["batch"] for r in records] == [3, 3, 6]
    state = load_checkpoint(last)
    assert state["batches_done"] == 6 and state[SELECTION_KEY] == records[-1]
    assert state["frontend"] == records[-1]["frontend_chosen"]


def _result(window_s, step_s, eer, from_config=False):
    settings = FrontendSettings(window_s=window_s, step_s=step_s)
    return CandidateResult(settings, eer, windows_per_minute(settings), from_config)


def test_ties_go_to_fewer_windows_and_the_summary_names_every_candidate():
    own, whole, two = _result(3.0, 0.1, 10.0, True), _result(None, 0.1, 10.0), _result(2.0, 1.0, 9.5)
    assert (own.windows_per_minute, whole.windows_per_minute, two.windows_per_minute) == (571, 1, 59)
    assert choose([own, whole]).chosen is whole
    assert choose([own, _result(3.0, 1.5, 10.0)]).chosen.settings.step_s == 1.5
    choice = choose([own, whole, two])
    assert choice.chosen is two
    assert choice.summary() == ("front-end chosen on validation: 2 s/1 s windows (EER 9.50%; "
                                "3 s/0.1 s windows (config) 10.00%, whole utterance 10.00%)")


def test_candidates_start_with_the_config_and_drop_repeats(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("frontend: {vad: false, window_s: 2.0, step_s: 1.0, rms_dbfs: -26.0}\n"
                    "validation:\n  frontend_candidates: [{window_s: null, step_s: 0.5}, {window_s: null},"
                    " {window_s: 2.0, step_s: 1.0}, {window_s: 2.0, step_s: 0.5}]\n")
    settings = candidate_settings(load_config(path))
    assert [(s.window_s, s.step_s) for s in settings] == [(2.0, 1.0), (None, 0.5), (2.0, 0.5)]
    assert all((s.vad, s.rms_dbfs) == (False, -26.0) for s in settings)
    (tmp_path / "defaults.yml").write_text("{}\n")
    defaults = candidate_settings(load_config(tmp_path / "defaults.yml"))
    assert [(s.window_s, s.step_s) for s in defaults] == [(3.0, 0.1), (None, 0.1), (2.0, 1.0), (3.0, 1.5)]
    for bad, field in (("[{window_s: -1}]", r"frontend_candidates\[0\]\.window_s"),
                       ("[{window_s: 1.0, step: 0.5}]", "step"), ("[{window_s: 1.0, step_s: 0}]", "step_s")):
        with pytest.raises(ConfigError, match=field):
            load_config(path, [f"validation.frontend_candidates={bad}"])


def test_the_measured_checkpoint_carries_a_calibration_fitted_on_validation(tmp_path, tiny_corpus, monkeypatch,  # noqa: F811
                                                                              capsys):
    from voxmetric.evaluate.operating_point import calibrate_from_scores
    from voxmetric.inference.speaker_model import load_model
    from voxmetric.training import frontend_select

    rng = np.random.default_rng(0)
    labels = np.array([1] * 40 + [0] * 60)
    separable = np.where(labels == 1, rng.normal(0.7, 0.1, 100), rng.normal(0.2, 0.1, 100))
    scores = {"now": separable}

    def measured(network, config, device="cpu", progress=False):  # the validation scores a real run would give
        settings = FrontendSettings(vad=False, window_s=None)
        result = CandidateResult(settings, 10.0, windows_per_minute(settings), True, scores["now"], labels)
        return choose([result])

    monkeypatch.setattr(frontend_select, "measure", measured)
    config = load_config(_config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=1))
    train(config, tmp_path / "exp", progress=False)
    best = tmp_path / "exp" / "checkpoints" / "best.pt"
    expected = calibrate_from_scores(separable, labels, n_bootstrap=100, seed=0)
    state = load_checkpoint(best)
    assert state["threshold"] == pytest.approx(expected.threshold)
    assert state["calibration"] == pytest.approx(expected.calibration.to_dict())
    model = load_model(best)  # decides without a calibration file
    assert model.decision_threshold() == pytest.approx(expected.threshold)
    assert model.calibration.llr(0.7) == pytest.approx(expected.calibration.llr(0.7))

    # Same-speaker pairs scoring lower (a network worse than chance): no calibration, a note.
    scores["now"] = 1.0 - separable
    assert main(["train", str(tmp_path / "config.yml"), "--out", str(tmp_path / "exp"),
                 "--select-frontend-only"]) == 0
    assert "no calibration stored in the checkpoint" in capsys.readouterr().out
    assert "threshold" not in load_checkpoint(best)
