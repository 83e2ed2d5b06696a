"""torch.hub entry points for voxmetric's bundled pretrained speaker-embedding models.

Load from a local clone (nothing is downloaded: the weights ship in
``voxmetric/inference/bundled/``)::

    import torch
    model = torch.hub.load("/path/to/voxmetric", "sinctdnn_aam", source="local")
    model.embed("a.wav")                 # (embedding_dim,) numpy array
    model.score("a.wav", "b.wav")        # cosine similarity
    model.verify("a.wav", "b.wav")       # VerifyResult(score, llr, accepted, threshold, warnings)

Each entry point returns what ``voxmetric.load_model(name)`` returns: a
:class:`voxmetric.pretrained.SpeakerModel` (``.embed``, ``.embed_batch``, ``.score``,
``.verify``, ``.to(device)``; the ``torch.nn.Module`` is ``.network``). See the model
cards in ``voxmetric/inference/bundled/`` for what each model was trained on.
"""

dependencies = ["torch", "numpy", "scipy", "soundfile", "safetensors", "tqdm"]


def sinctdnn_aam(device: str = "cpu"):
    """SincNet + TDNN (x-vector) trained with additive angular margin softmax: the seed system.

    Args:
        device: where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Returns:
        ``voxmetric.pretrained.SpeakerModel``; 16 kHz input (other rates are resampled).
    """
    from voxmetric.inference.speaker_model import load_model

    return load_model("sinctdnn-aam", device=device)


def ecapa_aam(device: str = "cpu"):
    """ECAPA-TDNN on log mel filterbanks trained with additive angular margin softmax.

    Args:
        device: where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Returns:
        ``voxmetric.pretrained.SpeakerModel``; 16 kHz input (other rates are resampled).
    """
    from voxmetric.inference.speaker_model import load_model

    return load_model("ecapa-aam", device=device)
