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
