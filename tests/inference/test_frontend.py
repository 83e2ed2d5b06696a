"""Frontend.embed_each: one read of an input, several windows, each as Frontend.embed gives it."""

import numpy as np
import pytest
import torch

from voxmetric import audio
from voxmetric.errors import AudioError
from voxmetric.inference.frontend import Frontend, FrontendSettings
from voxmetric.models import build_model

WINDOWS = [(None, 0.1), (1.0, 0.5), (2.0, 0.25)]


@pytest.mark.parametrize("local", [True, False])
def test_embed_each_equals_embed_with_each_setting(tmp_path, rng, local, monkeypatch):
    torch.manual_seed(0)
    network = build_model("sinctdnn", tdnn_channels=32, tdnn_stats_channels=64, embedding_dim=16,
                          waveform_normalize=not local, instance_normalize=not local).eval()
    wav = tmp_path / "a.wav"
    audio.write(wav, (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32))
    base = FrontendSettings(vad=False, window_s=3.0, step_s=0.1, rms_dbfs=-30.0)
    reads = []
    read = audio.read
    monkeypatch.setattr(audio, "read", lambda *a, **k: reads.append(a) or read(*a, **k))
    each = Frontend(network, base).embed_each(str(wav), WINDOWS)
    assert len(reads) == 1  # read, high-passed and level-normalised once for every setting
    for got, (window_s, step_s) in zip(each, WINDOWS):
        want = Frontend(network, base.replace(window_s=window_s, step_s=step_s)).embed(str(wav))[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    with pytest.raises(AudioError, match="missing.wav"):
        Frontend(network, base).embed_each(str(tmp_path / "missing.wav"), WINDOWS)
