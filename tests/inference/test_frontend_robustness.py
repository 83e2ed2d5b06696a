"""The front-end's high-pass: a DC offset, mains hum or a -30 dB gain barely move a bundled model's embedding."""

import numpy as np
import pytest

from voxmetric import audio
from voxmetric.inference.speaker_model import BUNDLED, SpeakerModel, load_model

from ..audio.test_quality import _degraded


@pytest.mark.parametrize("name", BUNDLED)
def test_embedding_survives_dc_hum_and_gain(shared_data, name):
    model = load_model(name)
    clean = audio.read(shared_data / "real" / "arctic-aew" / "arctic_a0001.flac")
    reference = model.embed(clean)
    for case, waveform in _degraded(clean).items():
        cosine = SpeakerModel.cosine(reference, model.embed(waveform.astype(np.float32)))
        assert cosine > 0.99, (case, cosine)


def test_dc_offset_file_is_embedded(shared_data):
    model = load_model("sinctdnn-aam")
    path = shared_data / "librispeech-1utt" / "445" / "445-123857-0000.flac"
    embedding, report = model.embed_with_quality(path)
    centred = model.embed(audio.read(path) + 0.25)  # the offset removed by hand
    assert report.warnings == [] and SpeakerModel.cosine(embedding, centred) > 0.999


@pytest.mark.parametrize("name", BUNDLED)
def test_fast_path_gives_the_reference_embeddings(shared_data, name):
    """Features once in float32 blocks, no per-call .to() / mode walk: same embeddings within 1e-4 as
    the plain computation (float64 VAD features, float64 level, one forward pass)."""
    import torch

    from voxmetric.audio import vad

    from ..audio.test_vad import _float64_features

    model = load_model(name).set_frontend(window_s=None)  # one pass: windows are tested elsewhere
    config = vad.VadConfig(highpass_hz=None)
    for path in sorted((shared_data / "real").glob("*/*.flac"))[::25]:
        waveform = vad.highpass(audio.read(path), 16000)
        energy, band, flatness = _float64_features(waveform, config)
        features = vad.FrameFeatures(energy, band, flatness, 400, 160)
        trimmed = vad.trim_silence(waveform, 16000, 0.1, vad.segments_from_features(features, waveform.size))
        rms = np.sqrt(np.mean(trimmed.astype(np.float64) ** 2))
        level = (trimmed * (10 ** (model.settings.rms_dbfs / 20) / rms)).astype(np.float32)
        with torch.inference_mode():
            reference = model.network(torch.from_numpy(level)[None])[0].numpy()
        assert np.abs(model.embed(path) - reference).max() < 1e-4, path.name
