"""Fuzzed audio: every mutant of a valid WAV / FLAC / OGG file gives an embedding or a
one-line error naming the file; no traceback, no hang, no huge allocation.

The fuzzer is ``benchmarks/fuzz_audio.py`` (thousands of mutants there, 60 here).
"""

import importlib.util
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from voxmetric import audio
from voxmetric.cli import main
from voxmetric.errors import AudioError
from voxmetric.inference.speaker_model import load_model

from ..conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location("fuzz_audio", REPO_ROOT / "benchmarks" / "fuzz_audio.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

MAX_SECONDS_PER_FILE = 5.0
MAX_PEAK_MB = 200


@pytest.fixture(scope="module")
def fuzz_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    model_path = fuzz.make_tiny_model(tmp)
    seeds = fuzz.write_seeds(tmp / "seeds")
    return model_path, seeds, fuzz.mutants(seeds, 60, tmp / "mutants", seed=0)


def test_seed_files_embed(fuzz_setup):
    model_path, seeds, _ = fuzz_setup
    model = load_model(model_path)
    for path in seeds:
        assert fuzz.check_one(model, str(path)) == ("embedded", ""), path


def test_mutants_embed_or_are_refused_in_one_line(fuzz_setup):
    model_path, _, files = fuzz_setup
    model = load_model(model_path)
    counts = {"embedded": 0, "refused": 0}
    tracemalloc.start()
    try:
        for path, description in files:
            tracemalloc.reset_peak()
            started = time.perf_counter()
            status, message = fuzz.check_one(model, str(path))
            seconds = time.perf_counter() - started
            peak_mb = tracemalloc.get_traced_memory()[1] / 2 ** 20
            assert status != "failed", f"{path.name} ({description}): {message}"
            assert seconds < MAX_SECONDS_PER_FILE, f"{path.name} ({description}) took {seconds:.1f} s"
            assert peak_mb < MAX_PEAK_MB, f"{path.name} ({description}) allocated {peak_mb:.0f} MB"
            counts[status] += 1
    finally:
        tracemalloc.stop()
    assert counts["embedded"] and counts["refused"]  # the fuzzer reaches both outcomes


def _wav_with(tmp_path, name, **fields):
    x = fuzz.voice()
    path = tmp_path / name
    sf.write(path, x, 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    layout = fuzz.wav_fields(bytes(data))
    for field, value in fields.items():
        offset, size = layout[field]
        data[offset:offset + size] = value.to_bytes(size, "little")
    path.write_bytes(bytes(data))
    return path


def _flac_with_total(tmp_path, total):
    path = tmp_path / "lying.flac"
    sf.write(path, fuzz.voice(), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    packed = int.from_bytes(data[18:26], "big")
    data[18:26] = ((packed & ~((1 << 36) - 1)) | total).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def test_absurd_headers_are_refused_up_front(tmp_path):
    started = time.perf_counter()
    with pytest.raises(AudioError, match=r"rate1\.wav: .*sample rate 1 Hz"):
        audio.read(_wav_with(tmp_path, "rate1.wav", sample_rate=1))
    with pytest.raises(AudioError, match=r"rate1\.wav: .*sample rate"):
        audio.info(tmp_path / "rate1.wav")
    with pytest.raises(AudioError, match=r"huge\.wav: .*sample rate 1000000 Hz"):
        audio.read(_wav_with(tmp_path, "huge.wav", sample_rate=1_000_000))
    with pytest.raises(AudioError, match=r"many\.wav: .*1000 channels"):
        audio.read(_wav_with(tmp_path, "many.wav", channels=1000))
    with pytest.raises(AudioError, match=r"lying\.flac: .*declares .* h of audio"):
        audio.read(_flac_with_total(tmp_path, (1 << 36) - 1))
    assert time.perf_counter() - started < 2.0


def test_a_length_beyond_the_file_reads_what_exists(tmp_path):
    # a data chunk claiming 4 GB: libsndfile clamps WAV; the block reader never trusts the header anyway
    path = _wav_with(tmp_path, "long.wav", data_size=0xFFFFFFF0, riff_size=0xFFFFFFF0)
    np.testing.assert_array_equal(audio.read(path), audio.read(_wav_with(tmp_path, "ok.wav")))
    flac = _flac_with_total(tmp_path, 16000 * 3600)  # says one hour, holds 1.5 s
    assert audio.read(flac).shape == (24000,)


def test_odd_sample_rates_resample_fast():
    x = np.random.default_rng(0).normal(size=383_999).astype(np.float32)
    started = time.perf_counter()
    y = audio.resample(x, 383_999)
    assert time.perf_counter() - started < 2.0 and y.shape == (16_000,)


def test_cli_refuses_fuzzed_files_in_one_line(fuzz_setup, tmp_path, capsys):
    model_path, seeds, files = fuzz_setup
    bad = [_wav_with(tmp_path, "rate1.wav", sample_rate=1), _flac_with_total(tmp_path, (1 << 36) - 1),
           tmp_path / "trunc.ogg"]
    (tmp_path / "trunc.ogg").write_bytes(seeds[-1].read_bytes()[:60])
    for path in bad:
        assert main(["embed", str(model_path), str(path), "--out", str(tmp_path / "e.npz"), "-q"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"voxmetric: error: {path}: ") and "\n" not in err, err
        assert main(["verify", str(model_path), str(seeds[0]), str(path)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"voxmetric: error: {path}: ") and "\n" not in err, err
    assert not (tmp_path / "e.npz").exists()
    assert main(["verify", str(model_path), str(seeds[0]), str(seeds[2])]) == 0
    assert "decision" in capsys.readouterr().out
