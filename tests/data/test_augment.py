"""Augmentation: measured SNRs, identity cases, band limits, folder errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from voxmetric import audio
from voxmetric.data.augment import Augmentation, add_noise, band_limit, random_gain_db, reverberate
from voxmetric.errors import ConfigError, VoxmetricError

SR = audio.SAMPLE_RATE_HZ


def _snr_db(clean, noisy) -> np.ndarray:
    clean, noise = clean.astype(np.float64), noisy.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean**2, axis=1) / np.mean(noise**2, axis=1))


def _sine(freq_hz, duration_s=1.0, amplitude=0.5) -> np.ndarray:
    t = np.arange(int(duration_s * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _level_db(x) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


@pytest.fixture
def noise_dir(tmp_path):
    """MUSAN-like layout: noise/<source>/<file>.wav, white and brown-ish noise."""
    rng = np.random.default_rng(0)
    for source, n in (("free-sound", 2), ("sound-bible", 1)):
        (tmp_path / "noise" / source).mkdir(parents=True)
        for i in range(n):
            audio.write(tmp_path / "noise" / source / f"n{i}.wav", 0.3 * rng.uniform(-1, 1, 2 * SR))
    (tmp_path / "noise" / "README").write_text("not audio")
    return tmp_path / "noise"


def test_add_noise_hits_the_target_snr(rng):
    clean = rng.standard_normal((4, 8000)).astype(np.float32) * [[0.1], [0.5], [1.0], [0.01]]
    noise = rng.standard_normal((4, 8000)).astype(np.float32) * 3.0
    target = np.array([0.0, 5.0, 12.5, 30.0])
    noisy = add_noise(clean.astype(np.float32), noise, target)
    assert noisy.dtype == np.float32
    np.testing.assert_allclose(_snr_db(clean, noisy), target, atol=0.5)


def test_add_noise_leaves_silent_rows_alone(rng):
    clean = np.zeros((2, 100), np.float32)
    clean[1] = 0.5
    noise = np.ones((2, 100), np.float32)
    noise[1] = 0.0
    np.testing.assert_array_equal(add_noise(clean, noise, np.array([10.0, 10.0])), clean)


def test_augmentation_snr_in_configured_range(noise_dir, rng):
    augment = Augmentation(noise_dir=str(noise_dir), snr_db=(10.0, 20.0))
    clean = rng.standard_normal((16, SR)).astype(np.float32) * 0.1
    noisy = augment(clean, np.random.default_rng(1))
    snr = _snr_db(clean, noisy)
    assert ((snr > 10.0 - 0.1) & (snr < 20.0 + 0.1)).all(), snr
    assert np.ptp(snr) > 1.0, "SNRs are drawn, not fixed"


def test_augmentation_is_reproducible_and_pickles_without_the_bank(noise_dir, rng):
    augment = Augmentation(noise_dir=str(noise_dir))
    clean = rng.standard_normal((4, 8000)).astype(np.float32)
    first = augment(clean, np.random.default_rng(7))
    copy = pickle.loads(pickle.dumps(augment))
    assert copy._noise_bank is None
    np.testing.assert_array_equal(copy(clean, np.random.default_rng(7)), first)


def test_noise_bank_is_bounded(noise_dir):
    augment = Augmentation(noise_dir=str(noise_dir), max_noise_s=2.5)
    assert len(augment._load_noise()) == int(2.5 * SR)


def test_noise_bank_of_linked_folders_skips_hidden_files(noise_dir, tmp_path):
    """A folder of links to the noise sources, with macOS junk beside them, holds the same bank."""
    import warnings

    links = tmp_path / "linked"
    links.mkdir()
    for source in ("free-sound", "sound-bible"):
        (links / source).symlink_to(noise_dir / source)
    (links / "._n0.wav").write_bytes(b"\x00\x05\x16\x07 AppleDouble, not audio")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipping unreadable noise file"
        linked = Augmentation(noise_dir=str(links), max_noise_s=10.0)._load_noise()
    np.testing.assert_array_equal(linked, Augmentation(noise_dir=str(noise_dir), max_noise_s=10.0)._load_noise())


def test_probability_zero_leaves_input_unchanged(noise_dir, rng):
    augment = Augmentation(noise_dir=str(noise_dir), noise_prob=0.0)
    clean = rng.standard_normal((8, 4000)).astype(np.float32)
    out = augment(clean, np.random.default_rng(0))
    np.testing.assert_array_equal(out, clean)
    assert out is not clean


def test_empty_noise_folder_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VoxmetricError, match="empty"):
        Augmentation(noise_dir=str(tmp_path / "empty"))


def test_rir_prob_without_rir_dir_is_a_config_error():
    with pytest.raises(ConfigError, match="rir_prob"):
        Augmentation(rir_prob=0.5)


def test_reverb_with_unit_impulse_returns_input(rng):
    clean = rng.standard_normal((3, 4000)).astype(np.float32)
    impulse = np.zeros((3, 300))
    impulse[:, 0] = 1.0
    impulse[2] = np.roll(impulse[2], 40) * 0.3  # delayed and quieter: alignment and power rescale
    np.testing.assert_allclose(reverberate(clean, impulse), clean, atol=1e-5)


def test_reverb_keeps_length_and_power(rng):
    clean = rng.standard_normal((2, 4000)).astype(np.float32)
    rirs = [np.exp(-np.arange(800) / 100.0) * rng.standard_normal(800), np.r_[0.0, 1.0, 0.5, 0.25]]
    wet = reverberate(clean, rirs)
    assert wet.shape == clean.shape and wet.dtype == np.float32
    np.testing.assert_allclose(np.mean(wet**2, axis=1), np.mean(clean**2, axis=1), rtol=1e-4)


def test_augmentation_reverberates_from_a_rir_folder(tmp_path, rng):
    (tmp_path / "rirs" / "room").mkdir(parents=True)
    impulse = np.zeros(800, np.float32)
    impulse[0] = 0.9
    audio.write(tmp_path / "rirs" / "room" / "rir1.wav", impulse)
    audio.write(tmp_path / "rirs" / "room" / "noise1.wav", rng.uniform(-1, 1, 800))  # left out
    augment = Augmentation(rir_dir=str(tmp_path / "rirs"), rir_prob=1.0)
    clean = rng.standard_normal((4, 4000)).astype(np.float32) * 0.1
    np.testing.assert_allclose(augment(clean, np.random.default_rng(0)), clean, atol=1e-4)


def test_band_limit_keeps_telephone_band():
    tones = np.stack([_sine(100), _sine(1000), _sine(6000)])
    out = band_limit(tones, 300, 3400, SR)
    middle = slice(SR // 4, 3 * SR // 4)  # away from the filter's edge transients
    gains_db = [_level_db(out[i, middle]) - _level_db(tones[i, middle]) for i in range(3)]
    assert gains_db[0] < -20 and gains_db[2] < -20
    assert abs(gains_db[1]) < 1.0


def test_band_limit_rejects_impossible_band():
    with pytest.raises(ConfigError, match="high_hz"):
        band_limit(np.zeros((1, 100)), 300, 9000, SR)


def test_random_gain_db_in_range(rng):
    x = np.ones((50, 10), np.float32)
    gains_db = 20 * np.log10(random_gain_db(x, rng, (-6.0, 6.0))[:, 0])
    assert (gains_db >= -6.0 - 1e-4).all() and (gains_db <= 6.0 + 1e-4).all()
    assert np.ptp(gains_db) > 3.0


def test_eq_tilt_changes_timbre_not_level():
    from voxmetric.data.augment import eq_tilt

    t = np.arange(16000) / 16000
    low = np.sin(2 * np.pi * 500 * t)
    high = np.sin(2 * np.pi * 4000 * t)
    x = np.stack([low + high, low + high]).astype(np.float32)
    y = eq_tilt(x, np.array([6.0, -6.0]))
    np.testing.assert_allclose(np.mean(y**2, axis=1), np.mean(x**2, axis=1), rtol=1e-4)

    def ratio_db(row):
        spectrum = np.abs(np.fft.rfft(row))
        return 20 * np.log10(spectrum[4000] / spectrum[500])

    # 500 Hz -> 4 kHz is 3 octaves: +-18 dB relative to the flat input.
    assert ratio_db(y[0]) - ratio_db(x[0]) == pytest.approx(18.0, abs=0.1)
    assert ratio_db(y[1]) - ratio_db(x[1]) == pytest.approx(-18.0, abs=0.1)


def test_channel_effects_in_augmentation():
    from voxmetric.data.augment import Augmentation

    t = np.arange(8000) / 16000
    x = np.tile(np.sin(2 * np.pi * 100 * t).astype(np.float32), (6, 1))
    phone = Augmentation(band_limit_prob=1.0)(x, np.random.default_rng(0))
    assert np.all(np.mean(phone[:, 1000:-1000] ** 2, axis=1) < 0.01 * np.mean(x**2, axis=1))  # 100 Hz removed
    gained = Augmentation(gain_db=(-6.0, -6.0))(x, np.random.default_rng(0))
    np.testing.assert_allclose(gained, x * 10 ** (-6 / 20), rtol=1e-5)
    untouched = Augmentation(band_limit_prob=0.0, eq_tilt_prob=0.0)(x, np.random.default_rng(0))
    np.testing.assert_array_equal(untouched, x)
    with pytest.raises(ConfigError, match="eq_tilt_prob"):
        Augmentation(eq_tilt_prob=2.0)


def _band_power(x: np.ndarray, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / audio.SAMPLE_RATE_HZ)
    return float(spectrum[..., (freqs >= low_hz) & (freqs < high_hz)].sum())


def test_codec_band_limit_cuts_above_a_drawn_codec_bandwidth():
    x = np.random.default_rng(0).standard_normal((16, 16000)).astype(np.float32)
    out = Augmentation(codec_prob=1.0, codec_cutoffs_hz=(3400.0, 7000.0))(x, np.random.default_rng(1))
    for row_in, row_out in zip(x, out):
        above_7k = _band_power(row_out, 7400, 8000) / _band_power(row_in, 7400, 8000)
        assert above_7k < 1e-3  # every row is cut at 3.4 or 7 kHz
        assert _band_power(row_out, 1000, 3000) / _band_power(row_in, 1000, 3000) > 0.8
    cut_at_3k4 = [_band_power(o, 4000, 6500) / _band_power(i, 4000, 6500) < 1e-2 for i, o in zip(x, out)]
    assert 0 < sum(cut_at_3k4) < 16  # both cut-offs drawn


def test_codec_prob_zero_draws_nothing():
    x = np.random.default_rng(0).standard_normal((8, 8000)).astype(np.float32)
    a = Augmentation(eq_tilt_prob=1.0, gain_db=(-6.0, 6.0))(x, np.random.default_rng(3))
    b = Augmentation(eq_tilt_prob=1.0, gain_db=(-6.0, 6.0), codec_prob=0.0)(x, np.random.default_rng(3))
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError, match="codec_prob"):
        Augmentation(codec_prob=1.5)
    with pytest.raises(ConfigError, match="codec_cutoffs_hz"):
        Augmentation(codec_prob=0.5, codec_cutoffs_hz=(9000.0,))
