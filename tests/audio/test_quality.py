"""Quality report: SNR of synthetic mixtures, clipping, short speech, narrow-band sources, no speech."""

import json

import numpy as np
import pytest

from .test_vad import SR, speech_like, with_silences
from voxmetric import audio
from voxmetric.audio.quality import (MAX_CLIPPING_RATIO, MIN_SPEECH_DURATION_S, NoSpeechError, assess, clipping_ratio,
                               load_speech)


@pytest.mark.parametrize("snr_db", [25.0, 15.0, 8.0])
def test_snr_estimate_within_3_db(snr_db):
    speech_rms = 0.1
    waveform = with_silences(speech_rms * speech_like(2.0), 0.5, 0.7, noise_rms=speech_rms / 10 ** (snr_db / 20))
    report = assess(waveform, SR)
    assert report.snr_db == pytest.approx(snr_db, abs=3.0)
    assert report.warnings == []


def test_low_snr_is_warned():
    waveform = with_silences(0.1 * speech_like(3.0), 0.5, 0.7, noise_rms=0.1 / 10 ** (2 / 20))
    report = assess(waveform, SR)
    assert report.snr_db < 5
    assert any("noisy" in warning for warning in report.warnings)


def test_clipping_ratio_of_a_hard_clipped_sine():
    sine = np.sin(2 * np.pi * 200 * np.arange(SR) / SR)
    assert clipping_ratio(0.5 * sine) == 0.0
    clipped = np.clip(1.5 * sine, -1, 1)
    expected = np.mean(np.abs(1.5 * sine) >= 1)  # the samples that were cut
    assert expected == pytest.approx(1 - 2 / np.pi * np.arcsin(1 / 1.5), abs=0.02)  # fraction of a period
    assert clipping_ratio(clipped) == pytest.approx(expected, abs=0.005)
    # Clipped then scaled down: no sample near full scale, but flat tops at the extremes.
    assert clipping_ratio(0.5 * clipped) == pytest.approx(expected, abs=0.005)


def test_clipping_is_warned_above_one_percent():
    speech = np.clip(0.5 * speech_like(2.0), -0.99, 0.99) / 0.99  # peaks clipped to full scale
    waveform = with_silences(speech, 0.3, 0.3, 1e-3)
    report = assess(waveform, SR)
    assert report.clipping_ratio > MAX_CLIPPING_RATIO
    assert any("clipped" in warning for warning in report.warnings)


def test_short_speech_is_warned():
    short = assess(with_silences(0.1 * speech_like(1.0), 0.5, 0.5, 1e-3), SR)
    assert short.speech_duration_s < MIN_SPEECH_DURATION_S
    assert len(short.warnings) == 1 and "speech" in short.warnings[0]
    assert assess(with_silences(0.1 * speech_like(2.0), 0.5, 0.5, 1e-3), SR).warnings == []


def test_narrow_band_source_is_warned(tmp_path):
    at_8k = audio.resample(with_silences(0.1 * speech_like(2.0), 0.5, 0.5, 1e-3), SR, 8000)
    path = tmp_path / "phone.wav"
    audio.write(path, at_8k, 8000)
    waveform, report = load_speech(path)
    assert report.sample_rate_hz == 8000
    assert len(report.warnings) == 1 and "8000 Hz" in report.warnings[0]
    assert waveform.size / SR == pytest.approx(2.0 + 0.2, abs=0.1)  # speech plus 0.1 s margins, at 16 kHz
    json.dumps(report.to_dict())


def test_no_speech_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "silent.wav"
    audio.write(path, np.random.default_rng(0).normal(0, 1e-3, SR), SR)
    with pytest.raises(NoSpeechError, match="silent.wav: no speech"):
        load_speech(path)
    with pytest.raises(NoSpeechError, match="input: no speech"):
        assess(np.zeros(SR), SR)
    # With the VAD off, the whole recording counts as speech: no error, nothing trimmed.
    waveform, report = load_speech(path, vad=False)
    assert waveform.size == SR and report.speech_duration_s == pytest.approx(1.0)
