"""voxmetric.config: strict YAML configs, overrides, defaults in one place."""

import pytest
import yaml

from voxmetric.training.compare import parse_budget, run_config
from voxmetric.training.config import Config, config_from_dict, load_config, save_config
from voxmetric.errors import ConfigError, OverrideError
from voxmetric.losses import loss_params
from voxmetric.training.optim import lr_factor

from ..conftest import REPO_ROOT


def _write(tmp_path, data, name="exp.yml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_the_seed_system():
    config = Config()
    assert (config.model.name, config.loss.name) == ("sinctdnn", "aam")
    assert config.data.chunk_duration_s == 3.0
    assert config.data.speakers_per_batch == 128
    assert config.data.min_speaker_duration_s == 30.0
    assert (config.optimizer.name, config.optimizer.lr, config.schedule.name) == ("sgd", 0.01, "constant")


def test_unknown_key_is_rejected_with_its_dotted_name(tmp_path):
    path = _write(tmp_path, {"data": {"corpus": "x", "chunk_duraton_s": 2.0}})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "data.chunk_duraton_s" in message
    assert "chunk_duration_s" in message  # the allowed names are listed
    assert str(path) in message


def test_unknown_top_level_section():
    with pytest.raises(ConfigError, match="unknown config key 'trainer'"):
        config_from_dict({"trainer": {}})


@pytest.mark.parametrize(
    "data, field",
    [
        ({"data": {"speakers_per_batch": "many"}}, "data.speakers_per_batch"),
        ({"data": {"speakers_per_batch": 2.5}}, "data.speakers_per_batch"),
        ({"training": {"amp": "yes"}}, "training.amp"),
        ({"data": {"chunk_duration_s": -1}}, "data.chunk_duration_s"),
        ({"optimizer": {"name": "rmsprop"}}, "optimizer.name"),
        ({"data": {"augmentation": {"snr_db": [20, 10]}}}, "data.augmentation.snr_db"),
        ({"data": {"augmentation": {"noise_prob": 1.5}}}, "data.augmentation.noise_prob"),
        ({"seed": True}, "seed"),
    ],
)
def test_wrong_types_and_impossible_values_name_the_field(data, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        config_from_dict(data)


def test_ints_are_accepted_as_floats_and_nulls_where_optional():
    config = config_from_dict({"data": {"chunk_duration_s": 2}, "training": {"grad_clip_norm": None}})
    assert config.data.chunk_duration_s == 2.0 and isinstance(config.data.chunk_duration_s, float)
    assert config.training.grad_clip_norm is None


def test_overrides_and_relative_paths(tmp_path):
    path = _write(tmp_path, {"data": {"corpus": "corpus/wav"}, "evaluation": {"trials": "t.txt"}})
    config = load_config(path, ["training.epochs=3", "loss.params={margin_rad: 0.1}"])
    assert config.training.epochs == 3
    assert config.loss.params == {"margin_rad": 0.1}
    assert config.data.corpus == str(tmp_path / "corpus" / "wav")
    assert config.evaluation.trials == str(tmp_path / "t.txt")
    with pytest.raises(ConfigError, match="training.epoch"):
        load_config(path, ["training.epoch=3"])


def test_saved_config_loads_back_identically(tmp_path):
    config = config_from_dict({"seed": 7, "loss": {"name": "triplet", "params": {"mining": "hard"}}})
    save_config(config, tmp_path / "saved.yml")
    assert load_config(tmp_path / "saved.yml") == config


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        load_config(tmp_path)
    bad = tmp_path / "bad.yml"
    bad.write_text("seed: 1\ndata: [unclosed")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert str(caught.value) == (f"{bad}, line 2, column 16: invalid YAML: expected ',' or ']', but got "
                                 f"'<stream end>' (while parsing a flow sequence)")
    binary = tmp_path / "x.wav"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match=rf"^{binary}: not a UTF-8 text YAML config"):
        load_config(binary)
    with pytest.raises(OverrideError, match=r"^--set seed=\[: invalid YAML value \(.*\)$"):
        load_config(_write(tmp_path, {}), ["seed=["])


def test_errors_in_overrides_name_the_override(tmp_path, capsys):
    from voxmetric.cli import main

    config = _write(tmp_path, {})
    with pytest.raises(OverrideError, match=r"^--set training.epochs: not of the form key.path=value"):
        load_config(config, ["training.epochs"])
    with pytest.raises(ConfigError, match=r"^--set training.epochz=3: unknown config key 'training.epochz'"):
        load_config(config, ["training.epochz=3"])
    with pytest.raises(ConfigError, match=r"^--set seed=-1: seed must be >= 0"):
        load_config(config, ["training.epochs=2", "seed=-1"])
    own = _write(tmp_path, {"training": {"epochs": "x"}}, name="own.yml")
    with pytest.raises(ConfigError, match=rf"^{own}: training.epochs: expected int"):  # the file's own value
        load_config(own, ["seed=1"])
    assert main(["train", str(config), "--set", "training.epochs"]) == 2  # a malformed --set: usage error
    assert "usage: voxmetric train" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["train", str(config), "--resume", "--overwrite"])
    assert caught.value.code == 2 and "not allowed with argument --resume" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=nan", "optimizer.lr must be a finite number, got nan"),  # YAML 1.1 reads 'nan' as text
    ("optimizer.lr=.nan", "optimizer.lr must be a finite number, got nan"),  # and '.nan' as a float
    ("optimizer.lr=-inf", "optimizer.lr must be a finite number, got -inf"),
    ("training.max_time_s=.inf", "training.max_time_s must be a finite number, got inf"),
    ("data.augmentation.snr_db=[5, .inf]", r"data.augmentation.snr_db\[1\] must be a finite number, got inf"),
    ("validation.frontend_candidates=[{window_s: .nan}]",
     r"validation.frontend_candidates\[0\].window_s must be a finite number, got nan"),
    ("seed=-1", "seed must be >= 0, got -1"),
])
def test_non_finite_floats_and_negative_seeds_are_refused(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, {}), [override])
    assert load_config(_write(tmp_path, {}), ["description=nan"]).description == "nan"  # text stays text


def test_learning_rate_schedules():
    config = config_from_dict({"schedule": {"name": "step", "step_batches": 10, "gamma": 0.5, "warmup_batches": 4}})
    assert [lr_factor(config, b) for b in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(config, 9) == 1.0 and lr_factor(config, 10) == 0.5 and lr_factor(config, 25) == 0.25
    cosine = config_from_dict({"schedule": {"name": "cosine"}, "training": {"epochs": 1, "batches_per_epoch": 100}})
    assert lr_factor(cosine, 0) == pytest.approx(1.0)
    assert lr_factor(cosine, 50) == pytest.approx(0.5)
    assert lr_factor(cosine, 100) == pytest.approx(0.0, abs=1e-12)


def test_compare_budget_and_run_configs():
    assert parse_budget("300") == (300, None)
    assert parse_budget("2.5min") == (None, 150.0)
    assert parse_budget(None) == (None, None)
    for bad in ("0", "-3", "fast", "min"):
        with pytest.raises(ConfigError, match="--budget"):
            parse_budget(bad)
    for not_positive in ("0", "-3", "0min", "nanmin", "infmin"):
        with pytest.raises(ConfigError, match=f"--budget '{not_positive}' must be positive"):
            parse_budget(not_positive)
    base = config_from_dict({"loss": {"name": "aam", "params": {"scale": 30.0}},
                             "training": {"batches_per_epoch": 100}})
    run = run_config(base, "triplet", budget_batches=250, budget_s=None)
    # another loss: its own defaults, written out (not the base's AAM parameters)
    assert run.loss.name == "triplet" and run.loss.params == loss_params("triplet")
    assert run.data.chunks_per_speaker == 2  # pairs need K >= 2, for every loss alike
    assert (run.training.epochs, run.training.batches_per_epoch) == (3, 84)  # 252 batches: 250 + rounding
    same = run_config(base, "aam", budget_batches=40, budget_s=None)
    assert same.loss.params == {**loss_params("aam"), "scale": 30.0}  # the config's values over the defaults
    assert (same.training.epochs, same.training.batches_per_epoch) == (1, 40)
    assert base.loss.name == "aam" and base.data.chunks_per_speaker == 1  # the base is not modified


SHIPPED_CONFIGS = sorted((REPO_ROOT / "configs").rglob("*.yml")) + [REPO_ROOT / "voxmetric" / "configs" / "demo.yml"]


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_shipped_configs_are_valid_and_build(path):
    from voxmetric.losses import build_loss
    from voxmetric.models import build_model

    config = load_config(path)
    model = build_model(config.model.name, **config.model.params)
    build_loss(config.loss.name, embedding_dim=model.embedding_dim, num_speakers=8, **config.loss.params)


def test_distill_weight_must_be_positive_and_the_teacher_path_is_resolved(tmp_path):
    (tmp_path / "teacher.pt").write_bytes(b"")
    path = tmp_path / "c.yml"
    path.write_text("distill:\n  teacher: teacher.pt\n  weight: 0\n")
    with pytest.raises(ConfigError, match=r"distill\.weight must be positive"):
        load_config(path)
    path.write_text("distill:\n  teacher: teacher.pt\n  weight: 2.5\n")
    config = load_config(path)
    assert config.distill.teacher == str(tmp_path / "teacher.pt") and config.distill.weight == 2.5
    path.write_text("distill:\n  teacher: ecapa-aam\n")  # a bundled name stays a name
    assert load_config(path).distill.teacher == "ecapa-aam"
