"""The one folder walk behind corpus scans, noise and impulse-response banks and ``embed DIR``."""

from pathlib import Path

import numpy as np

from voxmetric import audio
from voxmetric.data.scan import audio_files_under


def _tone(path: Path, duration_s: float = 0.25) -> Path:
    t = np.arange(int(duration_s * 16_000)) / 16_000
    audio.write(path, 0.3 * np.sin(2 * np.pi * 220 * t))
    return path


def test_links_are_followed_once_hidden_entries_skipped_and_order_fixed(tmp_path):
    store = tmp_path / "store"
    _tone(store / "bob" / "b1.flac")
    _tone(store / "alice" / "day2" / "a2.wav")
    _tone(store / "alice" / "A1.WAV")
    (store / "alice" / "notes.txt").write_text("not audio")
    (store / "alice" / "day2" / "again").symlink_to(store / "alice")  # a link loop
    folder = tmp_path / "corpus"  # a corpus made of links to speaker folders
    folder.mkdir()
    (folder / "bob").symlink_to(store / "bob")
    (folder / "alice").symlink_to(store / "alice")
    (folder / "._x.wav").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS resource fork
    _tone(folder / ".Trash" / "deleted.wav")
    _tone(folder / "alice" / ".hidden.wav")

    found = audio_files_under(folder, (".wav", ".flac"))

    assert found == [str(folder / "alice" / "A1.WAV"), str(folder / "alice" / "day2" / "a2.wav"),
                     str(folder / "bob" / "b1.flac")]
    assert audio_files_under(folder, (".flac",)) == [str(folder / "bob" / "b1.flac")]
