"""PreparedCache: files prepared once per (file, settings), copies handed out, bounded, never stale."""

import os

import numpy as np
import pytest
import torch

from voxmetric import audio
from voxmetric.errors import AudioError
from voxmetric.inference.frontend import Frontend, FrontendSettings
from voxmetric.inference.prepared_cache import PreparedCache
from voxmetric.models import build_model

SETTINGS = FrontendSettings(vad=False, window_s=1.0, step_s=0.5, rms_dbfs=-26.0)


@pytest.fixture
def network():
    torch.manual_seed(0)
    return build_model("sinctdnn", tdnn_channels=32, tdnn_stats_channels=64, embedding_dim=16,
                       waveform_normalize=False, instance_normalize=False).eval()


def _write(path, rng, seconds=2.0, scale=0.1):
    audio.write(path, (scale * rng.standard_normal(int(16000 * seconds))).astype(np.float32))
    return str(path)


def test_cached_front_end_reads_each_file_once_and_embeds_identically(tmp_path, rng, network, monkeypatch):
    files = [_write(tmp_path / f"{i}.wav", rng) for i in range(3)]
    reads = []
    read = audio.read
    monkeypatch.setattr(audio, "read", lambda *a, **k: reads.append(a[0]) or read(*a, **k))
    cache = PreparedCache()
    want = Frontend(network, SETTINGS).embed_files(files)
    assert len(reads) == 3
    for _ in range(3):  # three "epochs" of validation
        got = Frontend(network, SETTINGS, cache=cache).embed_files(files)
        np.testing.assert_array_equal(got, want)
    assert len(reads) == 6 and (cache.hits, cache.misses, len(cache)) == (6, 3, 3)
    # another level or VAD setting prepares the files again: it shapes the waveform
    Frontend(network, SETTINGS.replace(rms_dbfs=-20.0), cache=cache).embed_files(files)
    assert len(reads) == 9 and len(cache) == 6


def test_copies_are_handed_out_and_a_changed_file_is_read_again(tmp_path, rng, network):
    path = _write(tmp_path / "a.wav", rng)
    cache = PreparedCache()
    frontend = Frontend(network, SETTINGS, cache=cache)
    first, _ = frontend.prepare(path)
    first[:] = 0.0  # the caller's copy: the cache is untouched
    second, _ = frontend.prepare(path)
    assert np.abs(second).max() > 0
    _write(tmp_path / "a.wav", rng, seconds=3.0)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third, _ = frontend.prepare(path)
    assert len(third) == 3 * 16000 and cache.misses == 2


def test_budget_evicts_oldest_and_skips_large_files_errors_are_not_cached(tmp_path, rng, network):
    one_second = 16000 * 4  # bytes of 1 s of float32
    cache = PreparedCache(max_bytes=9 * one_second)
    frontend = Frontend(network, SETTINGS, cache=cache)
    a, b, c = (_write(tmp_path / f"{n}.wav", rng, seconds=2.0) for n in "abc")
    big = _write(tmp_path / "big.wav", rng, seconds=3.0)  # more than a quarter of the budget
    for path in (a, b, c, a):
        frontend.prepare(path)
    assert cache.bytes <= cache.max_bytes and len(cache) == 3
    frontend.prepare(big)
    assert len(cache) == 3 and cache.bytes == 3 * 2 * one_second
    cache.max_bytes = 5 * one_second  # 7 s with d: b, the least recently used, leaves first
    frontend.prepare(_write(tmp_path / "d.wav", rng, seconds=1.0))
    assert [os.path.basename(k[0]) for k in cache._entries] == ["c.wav", "a.wav", "d.wav"]
    assert cache.bytes == 5 * one_second
    silent = tmp_path / "silent.wav"
    audio.write(silent, np.zeros(16000, dtype=np.float32))
    for _ in range(2):
        with pytest.raises(AudioError, match="silent.wav"):
            frontend.prepare(str(silent))
    with pytest.raises(AudioError, match="missing.wav"):
        frontend.prepare(str(tmp_path / "missing.wav"))
    assert all("silent" not in k[0] for k in cache._entries)
