"""Pretrained models: load by name or path, embed, score and verify (SPEC section 5).

>>> from voxmetric import load_model
>>> model = load_model("sinctdnn-aam")                      # doctest: +SKIP
>>> model.verify("a.wav", "b.wav").to_dict()                # doctest: +SKIP
{'score': 0.71, 'llr': 3.2, 'accepted': True, 'threshold': 0.42}

Three kinds of ``name_or_path``:

* a bundled name (:data:`BUNDLED`): ``voxmetric/inference/bundled/<name>.safetensors``, its
  SHA-256 checked against ``voxmetric/inference/bundled/manifest.json`` before anything is read;
* an exported weights file ``*.safetensors`` (:func:`voxmetric.export.export_pretrained`);
* a training checkpoint ``*.pt`` (:func:`voxmetric.checkpoint.load_embedding_model`):
  no calibration and no threshold unless given (see :meth:`SpeakerModel.verify`).

The weights file format is documented in :mod:`voxmetric.weights`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import audio
from ..errors import AudioError, CheckpointError, VoxmetricError
from ..evaluate.calibration import Calibration
from .weights import EmbeddingSettings, check_manifest, load_weights_checked, read_weights

__all__ = ["BUNDLED", "EmbeddingSettings", "SpeakerModel", "VerifyResult", "load_model", "load_network_weights"]

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED = ("sinctdnn-aam", "ecapa-aam")
"""Names of the models shipped with voxmetric (``voxmetric/inference/bundled/<name>.safetensors``)."""

SILENCE_DBFS = -90.0
"""Input quieter than this (RMS, dB re full scale) is refused as silent: nothing to embed."""

_MAX_CHANNELS = 8


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`SpeakerModel.verify`.

    Attributes:
        score: cosine similarity of the two embeddings, in [-1, 1].
        llr: calibrated natural-log likelihood ratio (same vs different speaker), or
            ``None`` for a model without calibration.
        accepted: ``score >= threshold``.
        threshold: the cosine threshold the decision used.
        warnings: input-quality warnings (short speech, low SNR, clipping, low sample
            rate), each starting with the input's name.
    """

    score: float
    llr: float | None
    accepted: bool
    threshold: float
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "warnings": list(self.warnings)}


def _resolve(name_or_path: str | os.PathLike) -> tuple[str, Path | None]:
    """``(kind, path)``: kind ``"bundled"``, ``"weights"`` or ``"checkpoint"``."""
    text = os.fspath(name_or_path)
    if text in BUNDLED:
        path = BUNDLED_DIR / f"{text}.safetensors"
        if not path.is_file():
            raise CheckpointError(f"bundled model {text!r} is not installed ({path} is missing); reinstall voxmetric")
        return "bundled", path
    path = Path(text)
    if not path.is_file():
        raise CheckpointError(f"{text!r} is neither a bundled model ({', '.join(BUNDLED)}) nor an existing file")
    return ("weights" if path.suffix == ".safetensors" else "checkpoint"), path


def _load_source(name_or_path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any], Path]:
    """``(model config {"name", "params"}, state dict, metadata, path)`` of any model source."""
    kind, path = _resolve(name_or_path)
    if kind == "checkpoint":
        from .checkpoint import load_checkpoint

        state = load_checkpoint(path)
        try:
            model_config, weights = state["config"]["model"], state["model"]
        except (KeyError, TypeError):
            raise CheckpointError(f"{path}: checkpoint has no model config and weights") from None
        metadata = {"calibration": None, "threshold": None, "embedding": EmbeddingSettings(),
                    "description": f"training checkpoint {path}", "training": {}}
        return model_config, weights, metadata, path
    check_manifest(path, required=kind == "bundled")
    weights, metadata = read_weights(path)
    return metadata["model"], weights, metadata, path


def _build(model_config: dict[str, Any], weights: dict[str, torch.Tensor], path: Path) -> torch.nn.Module:
    from ..models import build_model

    network = build_model(model_config["name"], **model_config["params"])
    load_weights_checked(network, weights, str(path))
    return network.eval()


def load_network_weights(network: torch.nn.Module, name_or_path: str | os.PathLike) -> dict[str, Any]:
    """Initialise ``network`` (for fine-tuning) from a bundled model, weights file or checkpoint.

    Only the embedding network is loaded; a training checkpoint's loss head is ignored
    (the trainer builds a new one for its own speaker set).

    Returns:
        The source's model config ``{"name", "params"}``.

    Raises:
        CheckpointError: unknown name, unreadable file, or weights whose architecture
            differs from ``network``'s (the message names the tensors and both configs).
    """
    model_config, weights, _, _ = _load_source(name_or_path)
    try:
        load_weights_checked(network, weights, f"init_from {os.fspath(name_or_path)!r}")
    except CheckpointError as error:
        own = getattr(network, "config", None)
        raise CheckpointError(f"{error}. The source is model {model_config['name']!r} with params "
                              f"{json.dumps(model_config['params'])}; the config's model is {json.dumps(own)}: "
                              f"make the config's model section match it") from None
    return model_config


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
               calibration: Calibration | dict | str | os.PathLike | None = None, vad: bool = True) -> "SpeakerModel":
    """Load a bundled model (:data:`BUNDLED`), an exported ``.safetensors`` file or a training checkpoint.

    Args:
        name_or_path: ``"sinctdnn-aam"``, ``"ecapa-aam"`` or a file path.
        device: where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        calibration: replaces the file's calibration: a :class:`Calibration`,
            ``{"scale", "offset"}``, or the path of a ``voxmetric calibrate`` JSON file
            (whose threshold then replaces the model's too).
        vad: trim non-speech before embedding (:mod:`voxmetric.vad`); the default.

    Raises:
        CheckpointError: unknown name, missing or corrupt file, checksum mismatch (bundled).
    """
    model_config, weights, metadata, path = _load_source(name_or_path)
    network = _build(model_config, weights, path)
    threshold = metadata["threshold"]
    calibration_file = calibration_path = None
    if isinstance(calibration, (str, os.PathLike)):
        from ..deploy.calibrate import CalibrationResult

        calibration_path = os.fspath(calibration)
        calibration_file = CalibrationResult.load(calibration_path)
        calibration, threshold = calibration_file.calibration, calibration_file.threshold
    elif calibration is not None:
        calibration = Calibration.from_dict(calibration)
    name = os.fspath(name_or_path) if os.fspath(name_or_path) in BUNDLED else path.stem
    model = SpeakerModel(network, name=name, calibration=calibration or metadata["calibration"],
                         threshold=threshold, embedding=metadata["embedding"], vad=vad,
                         info={"description": metadata.get("description", ""), "training": metadata.get("training"),
                               "source": str(path), "model": model_config})
    if calibration_file is not None and calibration_file.model not in (None, model.fingerprint):
        raise VoxmetricError(f"{calibration_path}: calibration made for model {calibration_file.model!r}, "
                             f"not {model.fingerprint!r}; calibrate this model on your pairs (voxmetric calibrate)")
    return model.to(_device(device))


def _device(name: str | torch.device) -> torch.device:
    """A usable torch device, or a clear error naming the bad value."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise VoxmetricError(f"device '{name}' is not a device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VoxmetricError(f"device is '{name}' but no CUDA device is available here")
    return device


# --- the model object -----------------------------------------------------------------


class SpeakerModel:
    """An embedding network with its extraction settings, calibration and threshold.

    Inputs (``a``, ``b``, items of ``embed_batch``) are audio file paths or arrays:
    ``(samples,)`` mono or ``(samples, channels)`` / ``(channels, samples)`` with at most
    8 channels (averaged to mono); float in [-1, 1] or int16 / int32 PCM (scaled);
    ``sample_rate`` is the arrays' rate (default 16000), resampled to 16 kHz.
    Embeddings are deterministic (eval mode, no dropout, no random cropping).

    With ``vad`` (the default) non-speech is trimmed before embedding
    (:func:`voxmetric.quality.load_speech`); every input also gets a quality report
    (speech duration, SNR, clipping, source sample rate) whose warnings
    :meth:`verify` returns, and an input without speech is a
    :class:`~voxmetric.quality.NoSpeechError`. Each input is embedded on its own, so
    a batch gives exactly the embeddings of its items alone (no padding).
    """

    def __init__(self, network: torch.nn.Module, name: str, calibration: Calibration | None = None,
                 threshold: float | None = None, embedding: EmbeddingSettings = EmbeddingSettings(),
                 info: dict[str, Any] | None = None, vad: bool = True):
        self.vad = vad
        self.network = network.eval()
        self.name = name
        self.calibration = calibration
        self.threshold = threshold
        self.embedding = embedding
        self.info = info or {}
        self.device = torch.device("cpu")

    @property
    def embedding_dim(self) -> int:
        return self.network.embedding_dim

    def __repr__(self) -> str:
        return (f"SpeakerModel({self.name!r}, embedding_dim={self.embedding_dim}, calibration={self.calibration}, "
                f"threshold={self.threshold}, device={str(self.device)!r})")

    def to(self, device: str | torch.device) -> "SpeakerModel":
        """Move the network to ``device``; returns ``self``."""
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    def set_embedding(self, **changes) -> "SpeakerModel":
        """Change extraction settings (``window_s``, ``step_s``, ``rms_dbfs``); returns ``self``."""
        self.embedding = replace(self.embedding, **changes)
        return self

    def waveform(self, item, sample_rate: int | None = None) -> np.ndarray:
        """An input as the ``(samples,)`` 16 kHz float32 waveform the network sees."""
        return self.prepare(item, sample_rate)[0]

    def prepare(self, item, sample_rate: int | None = None):
        """``(waveform, QualityReport)``: the input read, assessed, trimmed (``vad``), level-normalised."""
        from ..audio.quality import load_speech

        if isinstance(item, (str, os.PathLike)):
            if sample_rate is not None:
                raise ValueError("sample_rate is for arrays; a file's rate is read from its header")
            source = os.fspath(item)
            waveform, report = load_speech(source, vad=self.vad)
        else:
            source, mono = "input array", _as_mono(item, None)
            if mono.size == 0 or not np.isfinite(mono).all():
                raise AudioError(f"{source}: " + ("contains no samples" if mono.size == 0
                                                  else "contains NaN or infinite samples"))
            waveform, report = load_speech(mono, sample_rate_hz=sample_rate, vad=self.vad)
        return self._normalise_level(waveform, source), report

    def _normalise_level(self, waveform: np.ndarray, source: str) -> np.ndarray:
        if waveform.size == 0:
            raise AudioError(f"{source}: contains no samples")
        if not np.isfinite(waveform).all():
            raise AudioError(f"{source}: contains NaN or infinite samples")
        rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
        level_db = 20 * math.log10(rms) if rms > 0 else -math.inf
        if level_db < SILENCE_DBFS:
            raise AudioError(f"{source}: input is silent (RMS level {level_db:.1f} dBFS, below {SILENCE_DBFS:.0f}); "
                             f"nothing to embed")
        if self.embedding.rms_dbfs is None:
            return waveform
        gain = 10 ** ((self.embedding.rms_dbfs - level_db) / 20)
        return (waveform * gain).astype(np.float32)

    def embed(self, item, sample_rate: int | None = None) -> np.ndarray:
        """Embedding of a file or array: ``(embedding_dim,)`` float32 (mean of sliding windows)."""
        return self.embed_with_quality(item, sample_rate)[0]

    def embed_with_quality(self, item, sample_rate: int | None = None):
        """``(embedding, QualityReport)`` of a file or array."""
        from ..evaluate.extract import embed_waveform

        waveform, report = self.prepare(item, sample_rate)
        try:
            embedding = embed_waveform(self.network, waveform, window_s=self.embedding.window_s,
                                       step_s=self.embedding.step_s, device=self.device)
        except AudioError as error:  # too short for the network: say which input
            source = os.fspath(item) if isinstance(item, (str, os.PathLike)) else "input array"
            raise AudioError(f"{source}: {error}") from None
        return embedding, report

    @property
    def fingerprint(self) -> str:
        """``name:sha256:...`` of the network's configuration and weights: which model made an embedding."""
        import hashlib

        digest = hashlib.sha256(json.dumps(self.info.get("model"), sort_keys=True, default=str).encode())
        for key, tensor in sorted(self.network.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return f"{self.name}:sha256:{digest.hexdigest()[:32]}"

    def embed_batch(self, items: Sequence, sample_rate: int | None = None, progress: bool = False) -> np.ndarray:
        """Embeddings of several files or arrays: ``(len(items), embedding_dim)`` float32."""
        from tqdm.auto import tqdm

        rows = [self.embed(item, sample_rate) for item in tqdm(items, desc="embedding", unit="file",
                                                                 disable=not progress)]
        return np.stack(rows) if rows else np.zeros((0, self.embedding_dim), dtype=np.float32)

    @staticmethod
    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        """Cosine similarity of two ``(dim,)`` embeddings."""
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        return float(a @ b / norms) if norms > 0 else 0.0

    def score(self, a, b, sample_rate: int | None = None) -> float:
        """Cosine similarity of the embeddings of ``a`` and ``b`` (files or arrays)."""
        return self.cosine(self.embed(a, sample_rate), self.embed(b, sample_rate))

    def decision_threshold(self) -> float:
        """The cosine threshold :meth:`verify` uses: the stored EER threshold, else the
        Bayes threshold of the calibration at P_target = 0.5 (LLR = 0).

        Raises:
            VoxmetricError: the model has neither (a training checkpoint loaded without
                ``calibration=``).
        """
        if self.threshold is not None:
            return float(self.threshold)
        if self.calibration is not None:
            return self.calibration.bayes_threshold(0.5)
        raise VoxmetricError(
            f"model {self.name!r} has no calibration and no decision threshold (a training checkpoint?): "
            f"pass calibration={{'scale': ..., 'offset': ...}} to load_model (fit it with "
            f"voxmetric.evaluate.calibration.fit_calibration on labelled trial scores), give "
            f"verify(..., threshold=...), or export it with a threshold (voxmetric.export.export_pretrained)"
        )

    def verify(self, a, b, threshold: float | None = None, sample_rate: int | None = None) -> VerifyResult:
        """Same speaker? Score, calibrated LLR and decision.

        The decision is ``score >= threshold``: ``threshold`` when given, else
        :meth:`decision_threshold` (the model's EER threshold from its validation trials).
        ``llr`` is ``None`` when the model has no calibration; it can disagree with the
        decision near the threshold (the EER point and LLR = 0 are close, not equal).
        """
        threshold = self.decision_threshold() if threshold is None else float(threshold)
        (emb_a, report_a), (emb_b, report_b) = (self.embed_with_quality(x, sample_rate) for x in (a, b))
        score = self.cosine(emb_a, emb_b)
        llr = None if self.calibration is None else self.calibration.llr(score)
        warnings = tuple(_named(w, x) for x, report in ((a, report_a), (b, report_b)) for w in report.warnings)
        return VerifyResult(score=score, llr=llr, accepted=bool(score >= threshold), threshold=threshold,
                            warnings=warnings)


def _named(warning: str, item) -> str:
    """A quality warning prefixed with its input's name (when it does not say it already)."""
    source = os.fspath(item) if isinstance(item, (str, os.PathLike)) else "input array"
    return warning if warning.startswith(source) else f"{source}: {warning}"


def _as_mono(samples, sample_rate: int | None) -> np.ndarray:
    """Array input -> ``(samples,)`` float32 at 16 kHz (see :class:`SpeakerModel`)."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    elif samples.dtype == np.int32:
        samples = samples.astype(np.float32) / 2147483648.0
    elif not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(f"input array: unsupported sample type {samples.dtype}; use float, int16 or int32")
    if samples.ndim == 2:
        channel_axis = int(np.argmin(samples.shape))
        if samples.shape[channel_axis] > _MAX_CHANNELS:
            raise AudioError(f"input array: shape {samples.shape} is not (samples,), (samples, channels) or "
                             f"(channels, samples) with at most {_MAX_CHANNELS} channels")
        samples = samples.mean(axis=channel_axis)
    elif samples.ndim != 1:
        raise AudioError(f"input array: expected (samples,) or (samples, channels), got shape {samples.shape}")
    samples = samples.astype(np.float32)
    if sample_rate is not None and int(sample_rate) != audio.SAMPLE_RATE_HZ:
        samples = audio.resample(samples, int(sample_rate), audio.SAMPLE_RATE_HZ)
    return samples
