"""Generated noises, RIRs and the degradation of test recordings."""

import numpy as np
import pytest

from voxmetric import audio
from voxmetric.data.degrade import (coloured_noise, degrade, make_noise, room_impulse_response,
                                    write_noise_folder, write_rir_folder)


def test_coloured_noise_has_the_requested_slope(rng):
    x = coloured_noise(rng, 160000, -6.0)
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)

    def band_db(f):
        return 10 * np.log10(spectrum[(freqs > f / 1.1) & (freqs < f * 1.1)].mean())

    assert band_db(500) - band_db(4000) == pytest.approx(18.0, abs=1.5)  # 3 octaves x 6 dB


def test_rir_decays_to_minus_60_db_at_rt60(rng):
    rir = room_impulse_response(rng, rt60_s=0.5, drr_db=5.0)
    assert len(rir) == 8000 and np.argmax(np.abs(rir)) == 0
    energy = np.cumsum(rir[::-1] ** 2)[::-1]  # Schroeder integral
    decay_db = 10 * np.log10(energy / energy[1])
    t_20 = np.argmax(decay_db < -20) / 16000
    assert t_20 == pytest.approx(0.5 / 3, rel=0.25)  # -20 dB at a third of RT60


def test_noise_family_is_deterministic_and_folders_are_readable(tmp_path):
    kind, a = make_noise(1, duration_s=1.0, seed=3)
    assert kind == "hum"
    np.testing.assert_array_equal(a, make_noise(1, duration_s=1.0, seed=3)[1])
    write_noise_folder(tmp_path / "noise", files=3, duration_s=0.5)
    write_rir_folder(tmp_path / "rirs", files=2)
    assert sorted(p.name for p in (tmp_path / "noise").iterdir()) == ["babble-002.wav", "coloured-000.wav",
                                                                     "hum-001.wav"]
    assert all(len(audio.read(p)) > 0 for p in (tmp_path / "rirs").iterdir())


def test_degrade_is_deterministic_and_keeps_length(rng):
    clean = (0.1 * np.sin(2 * np.pi * 200 * np.arange(32000) / 16000)).astype(np.float32)
    bank = [make_noise(0, 1.0, 7)[1]]
    a, what = degrade(clean, np.random.default_rng(1), bank)
    b, _ = degrade(clean, np.random.default_rng(1), bank)
    np.testing.assert_array_equal(a, b)
    assert a.shape == clean.shape and np.abs(a).max() <= 0.99
    assert "gain" in what.describe()
    kinds = [degrade(clean, np.random.default_rng(s), bank)[1] for s in range(40)]
    assert any(k.telephone for k in kinds) and any(k.rt60_s for k in kinds) and any(k.snr_db for k in kinds)
