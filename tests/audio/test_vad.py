"""VAD: boundaries of synthetic speech, silence / hum / noise rejected, trimming, real recordings."""

import numpy as np
import pytest

from voxmetric.errors import ConfigError
from voxmetric.audio.vad import VadConfig, speech_duration_s, speech_segments, trim_silence

SR = 16_000


def speech_like(duration_s: float, f0_hz: float = 140.0, top_hz: float = 4000.0) -> np.ndarray:
    """Unit-RMS harmonic tone (vibrato, 4 Hz syllable-rate amplitude modulation): voiced speech's spectrum.

    Harmonics up to ``top_hz``: the default 4 kHz is band-limited audio to the quality
    report (:data:`voxmetric.audio.quality.MIN_HIGH_BAND_DB`); 7600 is wide-band."""
    t = np.arange(int(round(duration_s * SR))) / SR
    phase = 2 * np.pi * np.cumsum(f0_hz * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))) / SR
    tone = sum(np.sin(k * phase) / k for k in range(1, int(top_hz // f0_hz)))
    tone = tone * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return tone / np.sqrt(np.mean(tone**2))


def with_silences(speech: np.ndarray, before_s: float, after_s: float, noise_rms: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    signal = np.r_[np.zeros(int(before_s * SR)), speech, np.zeros(int(after_s * SR))]
    return (signal + rng.normal(0, noise_rms, signal.size)).astype(np.float32)


@pytest.mark.parametrize("noise_rms", [0.0, 1e-3, 0.01])
def test_speech_boundaries_within_50_ms(noise_rms):
    waveform = with_silences(0.1 * speech_like(1.5), 0.5, 0.7, noise_rms)
    segments = speech_segments(waveform, SR)
    assert len(segments) == 1
    start_s, end_s = segments[0]
    assert abs(start_s - 0.5) < 0.05 and abs(end_s - 2.0) < 0.05
    assert speech_duration_s(segments) == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize("name", ["zeros", "low noise", "hum", "white noise burst"])
def test_no_speech_gives_no_segments(name, rng):
    t = np.arange(2 * SR) / SR
    background = rng.normal(0, 1e-3, t.size)
    signals = {
        "zeros": np.zeros(t.size),
        "low noise": background,
        # Mains hum switching on: loud, but outside the speech band (criterion 2).
        "hum": background + (t > 0.8) * sum(0.1 / k * np.sin(2 * np.pi * 50 * k * t) for k in range(1, 5)),
        # A broadband burst: loud, in the band, but flat (criterion 3).
        "white noise burst": background + ((t > 0.5) & (t < 1.2)) * rng.normal(0, 0.1, t.size),
    }
    assert speech_segments(signals[name], SR) == []
    assert trim_silence(signals[name], SR).shape == (0,)


def test_shorter_than_a_frame_has_no_segments():
    assert speech_segments(np.ones(100), SR) == []


def test_trim_keeps_speech_and_margins_only():
    waveform = with_silences(0.1 * speech_like(1.5), 0.5, 0.7, 1e-3)
    trimmed = trim_silence(waveform, SR, margin_s=0.1)
    assert trimmed.dtype == np.float32
    assert trimmed.size / SR == pytest.approx(1.5 + 2 * 0.1, abs=0.06)
    # Only the 0.1 s margins of background remain: both ends hold low-level noise, the middle speech.
    assert np.sqrt(np.mean(trimmed[: int(0.05 * SR)] ** 2)) < 0.01
    assert np.sqrt(np.mean(trimmed[int(0.3 * SR): int(1.3 * SR)] ** 2)) > 0.05


def test_trim_merges_overlapping_margins():
    waveform = np.arange(SR, dtype=np.float32)
    kept = trim_silence(waveform, SR, margin_s=0.1, segments=[(0.2, 0.3), (0.45, 0.5), (0.9, 1.0)])
    expected = np.r_[waveform[int(0.1 * SR): int(0.6 * SR)], waveform[int(0.8 * SR):]]
    np.testing.assert_array_equal(kept, expected)


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="min_speech"):
        VadConfig.from_dict({"min_speach_s": 0.1})
    with pytest.raises(ConfigError, match="hop_s"):
        VadConfig(frame_s=0.01, hop_s=0.02)
    assert VadConfig.from_dict({"band_hz": [200, 3000]}).band_hz == (200, 3000)


@pytest.mark.parametrize("name", ["arctic-aew/arctic_a0001.flac", "ls-3005/3005-163389-0000.flac",
                                  "vctk-p225/p225_008.flac"])
def test_real_recordings_are_mostly_speech_with_silent_edges_trimmed(shared_data, name):
    from voxmetric import audio

    waveform = audio.read(shared_data / "real" / name)
    segments = speech_segments(waveform, SR)
    duration_s = waveform.size / SR
    assert 0.6 * duration_s < speech_duration_s(segments) < duration_s
    first_s, last_s = segments[0][0], segments[-1][1]
    assert first_s > 0.05 and last_s < duration_s - 0.05  # these recordings start and end with silence

    def rms_db(x):
        return 10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12)

    speech_db = rms_db(trim_silence(waveform, SR, margin_s=0.0, segments=segments))
    assert rms_db(waveform[: int(first_s * SR)]) < speech_db - 15
    assert rms_db(waveform[int(last_s * SR):]) < speech_db - 15


def _float64_features(waveform, config):
    """The one-pass float64 feature computation the blockwise float32 one replaced (reference)."""
    from scipy.ndimage import uniform_filter1d

    waveform = np.asarray(waveform, dtype=np.float64)
    frame, hop = int(round(config.frame_s * SR)), int(round(config.hop_s * SR))
    frames = np.lib.stride_tricks.sliding_window_view(waveform, frame)[::hop]
    energy_dbfs = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    spectrum = np.abs(np.fft.rfft((frames - frames.mean(axis=1, keepdims=True)) * np.hanning(frame), axis=1)) ** 2
    frequencies = np.fft.rfftfreq(frame, d=1.0 / SR)
    in_band = (frequencies >= config.band_hz[0]) & (frequencies <= config.band_hz[1])
    total = spectrum[:, 1:].sum(axis=1) + 1e-20
    band = spectrum[:, in_band]
    smoothed = np.maximum(uniform_filter1d(band, config.flatness_context_frames, axis=0, mode="nearest"), 0) + 1e-20
    flatness = np.exp(np.mean(np.log(smoothed), axis=1)) / np.mean(smoothed, axis=1)
    return energy_dbfs, band.sum(axis=1) / total, flatness


def test_blockwise_float32_features_match_the_float64_reference(shared_data, monkeypatch):
    from voxmetric import audio
    from voxmetric.audio import vad

    monkeypatch.setattr(vad, "BLOCK_FRAMES", 97)  # many blocks, odd size: the flatness context crosses them
    config = VadConfig(highpass_hz=None)
    paths = sorted((shared_data / "real").glob("*/*.flac"))[::10]
    for path in paths:
        waveform = vad.highpass(audio.read(path), SR)
        features = vad.frame_features(waveform, SR, config)
        energy, band, flatness = _float64_features(waveform, config)
        np.testing.assert_allclose(features.energy_dbfs, energy, atol=1e-3)
        np.testing.assert_allclose(features.band_ratio, band, atol=1e-4)
        np.testing.assert_allclose(features.flatness, flatness, atol=1e-4)
        reference = vad.FrameFeatures(energy, band, flatness, features.frame_length, features.hop_length)
        assert vad.segments_from_features(features, waveform.size, SR, config) == \
            vad.segments_from_features(reference, waveform.size, SR, config), path.name
