"""The calibrate command's library path: a user's trial list embedded by the model's front-end."""

import json

import numpy as np
import pytest

from voxmetric.deploy.calibrate import calibrate_trials
from voxmetric.errors import TrialsError


class _FakeModel:
    """Embeds a file as its speaker's direction (the name before '-') plus a little noise."""

    name = "fake"

    def __init__(self, rng):
        self.rng, self.directions = rng, {}

    settings = None

    def embed_files(self, paths, progress=False):
        rows = []
        for path in paths:
            speaker = path.rsplit("/", 1)[-1].split("-")[0]
            direction = self.directions.setdefault(speaker, self.rng.normal(size=16))
            rows.append(direction + 0.5 * self.rng.normal(size=16))
        return np.stack(rows)


def test_calibrate_trials_scores_each_pair(tmp_path, rng):
    lines = []
    for i in range(4):
        for j in range(3):
            (tmp_path / f"s{i}-{j}.wav").touch()
    for i in range(4):
        lines += [f"1 s{i}-0.wav s{i}-{j}.wav" for j in (1, 2)] + [f"0 s{i}-0.wav s{(i + 1) % 4}-1.wav"]
    trials = tmp_path / "trials.txt"
    trials.write_text("\n".join(lines) + "\n")
    result = calibrate_trials(_FakeModel(rng), trials, n_bootstrap=20)
    assert (result.n_target, result.n_nontarget, result.model) == (8, 4, "fake")
    assert result.eer == 0.0
    trials.write_text("1 s0-0.wav missing.wav\n0 s0-0.wav s1-1.wav\n")
    with pytest.raises(TrialsError, match="missing.wav"):
        calibrate_trials(_FakeModel(rng), trials)


def test_a_folder_given_as_calibration_file_is_one_line(tmp_path):
    from voxmetric.errors import CalibrationError
    from voxmetric.evaluate.operating_point import CalibrationResult

    with pytest.raises(CalibrationError, match=rf"^{tmp_path}: is a directory, not a calibration file$"):
        CalibrationResult.load(tmp_path)


@pytest.mark.parametrize("options, message", [({"target_far": 0.0}, "target_far"), ({"n_bootstrap": 0}, "n_bootstrap")])
def test_bad_options_are_refused_before_anything_is_embedded(tmp_path, rng, options, message):
    from voxmetric.deploy.calibrate import calibrate_pairs
    from voxmetric.errors import CalibrationError

    class _Untouchable(_FakeModel):
        def embed_files(self, paths, progress=False):
            raise AssertionError("embedded before the options were checked")

        embed_with_quality = embed_files

    trials = tmp_path / "trials.txt"
    trials.write_text("1 a.wav b.wav\n0 a.wav c.wav\n")
    for calibrate in (calibrate_trials, calibrate_pairs):
        with pytest.raises(CalibrationError, match=message):
            calibrate(_Untouchable(rng), trials, **options)
