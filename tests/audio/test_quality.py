"""Quality report: SNR of synthetic mixtures, clipping, short speech, narrow-band sources, no speech."""

import json

import numpy as np
import pytest

from .test_vad import SR, with_silences
from .test_vad import speech_like as narrow_speech_like


def speech_like(duration_s: float) -> np.ndarray:
    """Wide-band (harmonics to 7.6 kHz) synthetic speech: no band-limited warning."""
    return narrow_speech_like(duration_s, top_hz=7600.0)
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
    with pytest.raises(NoSpeechError, match="input array: no speech"):
        assess(np.zeros(SR), SR)
    # With the VAD off, the whole recording counts as speech: no error, nothing trimmed.
    waveform, report = load_speech(path, vad=False)
    assert waveform.size == SR and report.speech_duration_s == pytest.approx(1.0)


LIBRISPEECH_DC = "librispeech-1utt/445/445-123857-0000.flac"  # clear speech on a -0.25 DC offset


def test_speech_on_a_dc_offset_is_found_and_clean(shared_data):
    waveform, report = load_speech(shared_data / LIBRISPEECH_DC)
    assert report.speech_duration_s > 5 and report.snr_db > 20 and report.warnings == []
    assert abs(float(waveform.mean())) < 1e-3  # the high-pass removed the offset from what is embedded
    assert load_speech(shared_data / LIBRISPEECH_DC, vad=False)[1].snr_db > 20


def _degraded(waveform: np.ndarray) -> dict[str, np.ndarray]:
    t = np.arange(waveform.size) / SR
    rms = float(np.sqrt(np.mean(waveform.astype(np.float64) ** 2)))
    hum = (0.1 * rms * np.sin(2 * np.pi * 50 * t)).astype(np.float32)  # mains hum 20 dB under the speech
    return {"dc offset": waveform - 0.25, "50 Hz hum": waveform + hum, "-30 dB": waveform * np.float32(10 ** -1.5),
            "all three": (waveform + hum) * np.float32(10 ** -1.5) + 0.1}


def test_dc_hum_and_gain_leave_the_quality_report_sane(shared_data):
    clean = audio.read(shared_data / "real" / "arctic-aew" / "arctic_a0001.flac")
    reference = load_speech(clean)[1]
    for name, waveform in _degraded(clean).items():
        report = load_speech(waveform.astype(np.float32))[1]
        assert report.speech_duration_s == pytest.approx(reference.speech_duration_s, rel=0.15), name  # hum: -0.3 s
        assert report.snr_db > 20 and report.warnings == [], name


def test_band_limited_audio_is_warned(shared_data):
    from scipy.signal import butter, sosfilt

    wide = audio.read(shared_data / "real" / "arctic-aew" / "arctic_a0001.flac")
    telephone = sosfilt(butter(8, 3400, fs=SR, output="sos"), wide).astype(np.float32)
    wide_report, narrow_report = load_speech(wide)[1], load_speech(telephone)[1]
    assert wide_report.warnings == [] and wide_report.high_band_db > -30
    assert narrow_report.high_band_db < -40
    assert len(narrow_report.warnings) == 1 and "band-limited" in narrow_report.warnings[0]
    assert narrow_report.sample_rate_hz == 16000
    json.dumps(narrow_report.to_dict())
