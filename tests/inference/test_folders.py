"""``voxmetric embed MODEL DIR`` finds a folder's audio as training's corpus scan does."""

from voxmetric import audio
from voxmetric.cli import main
from voxmetric.evaluate.embeddings import load_embeddings_with_metadata

from ..training.test_trainer import _speaker_audio
from .test_speaker_model import make_weights


def test_embed_follows_linked_speaker_folders_and_skips_hidden_files(tmp_path, capsys):
    weights = make_weights(tmp_path)
    for utterance in range(2):
        audio.write(tmp_path / "store" / "spk1" / f"{utterance}.wav", _speaker_audio(1, utterance))
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "spk1").symlink_to(tmp_path / "store" / "spk1")  # as recipes/finetune/prepare.py makes them
    (folder / "spk1" / "._0.wav").write_bytes(b"\x00\x05\x16\x07 macOS resource fork, not audio")
    (folder / ".Trash").mkdir()
    (folder / ".Trash" / "old.wav").write_bytes(b"RIFF deleted and broken")

    out = tmp_path / "emb.npz"
    done = main(["embed", str(weights), str(folder), "--out", str(out), "--no-vad", "-q"])  # tones, not speech
    assert done == 0, capsys.readouterr().err
    ids, _, _ = load_embeddings_with_metadata(out)
    assert list(ids) == [str(folder / "spk1" / "0.wav"), str(folder / "spk1" / "1.wav")]
