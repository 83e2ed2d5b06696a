"""voxmetric.audio: reading, resampling, segments, metadata and every bad-input case."""

import numpy as np
import pytest
import soundfile as sf

from voxmetric import audio
from voxmetric.errors import AudioError, VoxmetricError


def _sine(freq_hz: float, duration_s: float, sample_rate_hz: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(duration_s * sample_rate_hz)) / sample_rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _peak_frequency_hz(x: np.ndarray, sample_rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sample_rate_hz)[np.argmax(spectrum)])


@pytest.mark.parametrize("native_hz", [8000, 22050, 44100, 48000])
def test_resampled_sine_keeps_its_frequency(tmp_path, native_hz):
    path = tmp_path / "sine.wav"
    sf.write(path, _sine(1000.0, 1.0, native_hz), native_hz)
    x = audio.read(path)
    assert x.dtype == np.float32
    assert len(x) == 16000
    assert _peak_frequency_hz(x, 16000) == pytest.approx(1000.0, abs=2.0)
    # Amplitude is kept: a polyphase filter with a flat pass band.
    assert np.abs(x[2000:-2000]).max() == pytest.approx(0.5, abs=0.01)


def test_resampling_removes_content_above_the_new_nyquist():
    x = _sine(7000.0, 1.0, 48000) + _sine(10000.0, 1.0, 48000)
    y = audio.resample(x, 48000, 16000)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    # 10 kHz would alias to 6 kHz without an anti-aliasing filter.
    alias = spectrum[np.abs(freqs - 6000) < 20].max()
    kept = spectrum[np.abs(freqs - 7000) < 20].max()
    assert 20 * np.log10(kept / alias) > 50


def test_stereo_is_downmixed_and_int16_scaled(tmp_path):
    path = tmp_path / "stereo.wav"
    left = np.full(1600, 16384, dtype=np.int16)
    right = np.zeros(1600, dtype=np.int16)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    x = audio.read(path)
    assert x.shape == (1600,)
    np.testing.assert_allclose(x, 0.25, atol=1e-4)


def test_8bit_wav_is_read_in_range(tmp_path):
    path = tmp_path / "u8.wav"
    sf.write(path, _sine(440.0, 0.5, 16000, amplitude=0.9), 16000, subtype="PCM_U8")
    x = audio.read(path)
    assert np.abs(x).max() <= 1.0
    assert np.abs(x).max() > 0.8


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_formats_round_trip(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    x = _sine(300.0, 0.5, 16000)
    audio.write(path, x)
    y = audio.read(path)
    assert len(y) == len(x)
    tolerance = 0.05 if suffix == ".ogg" else 1e-3  # ogg/vorbis is lossy
    assert np.abs(y - x).max() < tolerance


def test_segment_read_matches_full_read(tmp_path):
    path = tmp_path / "noise.flac"
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 48000).astype(np.float32)
    audio.write(path, x)
    full = audio.read(path)
    segment = audio.read(path, start_s=1.25, duration_s=0.5)
    np.testing.assert_array_equal(segment, full[20000:28000])
    tail = audio.read(path, start_s=2.5, duration_s=10.0)
    assert len(tail) == 8000  # a segment running past the end is returned shorter


def test_segment_read_seeks_instead_of_decoding_everything(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    audio.write(path, np.zeros(16000 * 20, dtype=np.float32))
    requested = []
    original = audio.io._read_block  # every decode goes through it, a block at a time

    def spy(f, frames):
        requested.append(frames)
        return original(f, frames)

    monkeypatch.setattr(audio.io, "_read_block", spy)
    assert len(audio.read(path, start_s=10.0, duration_s=1.0)) == 16000
    assert requested == [16000]


def test_info_reads_header_only(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros((44100, 2), dtype=np.float32), 44100)
    meta = audio.info(path)
    assert (meta.sample_rate_hz, meta.channels, meta.frames) == (44100, 2, 44100)
    assert meta.duration_s == pytest.approx(1.0)
    assert audio.duration_s(path) == pytest.approx(1.0)


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "out.wav"
    audio.write(path, np.zeros(160, dtype=np.float32))
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", broken)
    with pytest.raises(VoxmetricError, match=rf"{path}: cannot write \(disk full\)"):
        audio.write(path, np.ones(320, dtype=np.float32))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


# --- bad input: each problem is an AudioError naming the file -----------------------------


def _bad_files(tmp_path):
    missing = tmp_path / "missing.wav"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all, just text bytes" * 10)
    truncated = tmp_path / "truncated.wav"
    sf.write(truncated, np.zeros(1600, dtype=np.float32), 16000)
    truncated.write_bytes(truncated.read_bytes()[:30])
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, dtype=np.float32), 16000)
    nan = tmp_path / "nan.wav"
    samples = np.zeros(1600, dtype=np.float32)
    samples[100] = np.nan
    sf.write(nan, samples, 16000, subtype="FLOAT")
    unsupported = tmp_path / "clip.xyz"
    unsupported.write_bytes(b"\x00\x01" * 100)
    return {
        "missing": (missing, "no such file"),
        "empty": (empty, "empty file"),
        "garbage": (garbage, "unreadable or corrupt"),
        "truncated": (truncated, "unreadable or corrupt"),
        "zero": (zero, "no samples"),
        "nan": (nan, "NaN or infinite"),
        "unsupported": (unsupported, "unsupported audio format"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "truncated", "zero", "nan", "unsupported"])
def test_bad_input_is_a_voxmetric_error_naming_the_file(tmp_path, case):
    path, reason = _bad_files(tmp_path)[case]
    with pytest.raises(AudioError) as caught:
        audio.read(path)
    assert isinstance(caught.value, VoxmetricError)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert reason in message


def test_segment_after_the_end_is_an_error(tmp_path):
    path = tmp_path / "short.wav"
    audio.write(path, np.zeros(1600, dtype=np.float32))
    with pytest.raises(AudioError, match="after the end"):
        audio.read(path, start_s=1.0, duration_s=1.0)


def test_real_flac_from_shared_data(shared_data):
    path = shared_data / "real" / "ls-1998" / "1998-15444-0000.flac"
    meta = audio.info(path)
    x = audio.read(path)
    assert meta.sample_rate_hz == 16000
    assert len(x) == meta.frames
    assert 0.01 < np.abs(x).max() <= 1.0


def test_flac_of_unknown_length_reads_like_the_same_file_with_it(tmp_path):
    """An encoder writing FLAC to a pipe leaves STREAMINFO's total_samples at 0 ("unknown"):
    libsndfile then reports 2**63 - 1 frames, which must not read as "too long"."""
    signal = (0.1 * np.sin(np.arange(40_000) / 7.0)).astype(np.float32)
    known = tmp_path / "known.flac"
    audio.write(known, signal)
    data = bytearray(known.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first: total_samples at bytes 21-25
    data[21] &= 0xF0
    data[22:26] = bytes(4)
    unknown = tmp_path / "unknown.flac"
    unknown.write_bytes(bytes(data))
    assert sf.info(str(unknown)).frames >= 1 << 62  # libsndfile's "unknown"
    assert audio.info(unknown).frames == 40_000 and audio.duration_s(unknown) == 2.5
    np.testing.assert_array_equal(audio.read(unknown), audio.read(known))
    np.testing.assert_array_equal(audio.read(unknown, start_s=1.0, duration_s=0.5), audio.read(known, start_s=1.0, duration_s=0.5))


def test_counting_an_unknown_length_stops_past_a_limit(tmp_path):
    """A caller with a length limit (the service) learns that a streamed FLAC exceeds it after
    one decoded block, not after decoding the whole file."""
    from voxmetric.audio.io import READ_BLOCK_FRAMES

    signal = (0.1 * np.sin(np.arange(3 * READ_BLOCK_FRAMES + 5) / 7.0)).astype(np.float32)
    known = tmp_path / "known.flac"
    audio.write(known, signal)
    data = bytearray(known.read_bytes())
    data[21] &= 0xF0
    data[22:26] = bytes(4)
    unknown = tmp_path / "unknown.flac"
    unknown.write_bytes(bytes(data))
    whole = audio.info(unknown)
    assert whole.frames == len(signal) and not whole.counted_to_limit
    stopped = audio.info(unknown, stop_after_frames=1000)
    assert stopped.frames == READ_BLOCK_FRAMES and stopped.counted_to_limit
    header = audio.info(known, stop_after_frames=1000)  # a header that says: nothing to count
    assert header.frames == len(signal) and not header.counted_to_limit
