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
