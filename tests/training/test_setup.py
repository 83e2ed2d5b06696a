"""What a run's summary says about the speakers build_corpus left out or will tile."""

import numpy as np

from voxmetric import audio
from voxmetric.training.config import config_from_dict
from voxmetric.training.setup import build_corpus, describe_run


def _noise(path, duration_s: float) -> None:
    audio.write(path, np.random.default_rng(0).uniform(-0.3, 0.3, int(duration_s * 16_000)))


def test_summary_names_left_out_and_tiled_speakers(tmp_path):
    root = tmp_path / "corpus"
    for speaker in ("alice", "bob"):
        _noise(root / speaker / "1.wav", 2.0)  # 2 s files: longer than the 1.5 s chunks
        _noise(root / speaker / "2.wav", 2.0)
    for i in range(4):
        _noise(root / "tiny" / f"{i}.wav", 1.0)  # 4 s in all, every file shorter than a chunk
    for i in range(1, 8):
        _noise(root / f"so-000{i}" / "1.wav", 0.5 * i)  # 0.5 .. 3.5 s: less than 4 s
    config = config_from_dict({"data": {"corpus": str(root), "format": "folders", "chunk_duration_s": 1.5,
                                        "speakers_per_batch": 2, "min_speaker_duration_s": 4.0}})

    corpus = build_corpus(config)
    lines = describe_run(config, corpus)

    assert corpus.speakers == ["alice", "bob", "tiny"]  # the filter itself is unchanged
    assert lines[0].startswith("corpus: 3 speakers, 8 utterances")
    assert ("left out 7 speakers with less than 4 s of audio (data.min_speaker_duration_s): so-0001 (0.5 s), "
            "so-0002 (1.0 s), so-0003 (1.5 s), so-0004 (2.0 s), so-0005 (2.5 s) and 2 more") in lines
    tiled = [line for line in lines if "data.chunk_duration_s=1.5 s" in line]
    assert len(tiled) == 1 and tiled[0].startswith("tiled chunks: 1 speaker has only files shorter than")
    assert tiled[0].endswith(": tiny (longest 1.0 s)")


def test_summary_is_quiet_when_nothing_is_left_out_or_tiled(tmp_path):
    for speaker in ("alice", "bob"):
        _noise(tmp_path / "corpus" / speaker / "1.wav", 2.0)
    config = config_from_dict({"data": {"corpus": str(tmp_path / "corpus"), "format": "folders",
                                        "chunk_duration_s": 1.5, "speakers_per_batch": 2,
                                        "min_speaker_duration_s": 2.0}})
    lines = describe_run(config, build_corpus(config))
    assert lines[0].startswith("corpus: 2 speakers") and not any("left out" in line or "tiled" in line
                                                                 for line in lines)
