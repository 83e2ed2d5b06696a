"""Pretrained models: load by name or path, embed, score and verify.

>>> from voxmetric import load_model
>>> model = load_model("sinctdnn-aam")                      # doctest: +SKIP
>>> model.verify("a.wav", "b.wav").to_dict()                # doctest: +SKIP
{'score': 0.71, 'llr': 3.2, 'accepted': True, 'threshold': 0.42, 'warnings': []}

A :class:`SpeakerModel` is a network behind the one front-end
(:class:`~voxmetric.inference.frontend.Frontend`) with a calibration and a decision
threshold. Model files are read by :mod:`voxmetric.inference.loading` (bundled names,
``*.safetensors`` weights, training checkpoints); the weights format is documented in
:mod:`voxmetric.inference.weights`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..checks import same_model
from ..errors import ArgumentError, CheckpointError, VoxmetricError
from ..evaluate.calibration import Calibration
from ..evaluate.operating_point import CalibrationResult
from ..evaluate.embeddings import save_embeddings
from .frontend import ARRAY_NAME, Frontend, FrontendSettings, check_several, source_name
from .loading import BUNDLED, BUNDLED_DIR, build_network, device as parse_device, load_network_weights, read_source

__all__ = ["BUNDLED", "BUNDLED_DIR", "FrontendSettings", "SpeakerModel", "VerifyResult", "load_model",
           "load_network_weights"]


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


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
               calibration: Calibration | dict | str | os.PathLike | None = None, vad: bool = True) -> "SpeakerModel":
    """Load a bundled model (:data:`BUNDLED`), an exported ``.safetensors`` file or a training checkpoint.

    Args:
        name_or_path: ``"sinctdnn-aam"``, ``"ecapa-aam"`` or a file path.
        device: where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        calibration: replaces the file's calibration: a :class:`Calibration`,
            ``{"scale", "offset"}``, or the path of a ``voxmetric calibrate`` JSON file
            (whose threshold then replaces the model's too).
        vad: trim non-speech before embedding (:mod:`voxmetric.audio.vad`); the default.

    Raises:
        CheckpointError: unknown name, missing or corrupt file, checksum mismatch (bundled).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise CheckpointError(f"load_model: give a bundled model name ({', '.join(BUNDLED)}) or a file path, "
                              f"got {name_or_path!r}")
    if not isinstance(vad, bool):
        raise ArgumentError(f"load_model: vad must be True or False, got {vad!r}")
    source = read_source(name_or_path)
    network = build_network(source.model, source.weights, str(source.path))
    threshold, calibration_file, calibration_path = source.threshold, None, None
    if isinstance(calibration, (str, os.PathLike)):
        calibration_path = os.fspath(calibration)
        calibration_file = CalibrationResult.load(calibration_path)
        calibration, threshold = calibration_file.calibration, calibration_file.threshold
    elif calibration is not None:
        calibration = Calibration.from_dict(calibration)
    name = os.fspath(name_or_path) if os.fspath(name_or_path) in BUNDLED else source.path.stem
    model = SpeakerModel(network, name=name, calibration=calibration or source.calibration, threshold=threshold,
                         frontend=source.frontend.replace(vad=vad),
                         info={"description": source.description, "training": source.training,
                               "source": str(source.path), "model": source.model})
    if calibration_file is not None and calibration_file.model is not None and \
            not same_model(calibration_file.model, model.fingerprint):
        raise VoxmetricError(f"{calibration_path}: calibration made for model {calibration_file.model!r}, "
                             f"not {model.fingerprint!r}; calibrate this model on your pairs (voxmetric calibrate)")
    return model.to(parse_device(device))


class SpeakerModel:
    """An embedding network behind the one front-end, with its calibration and threshold.

    Inputs (``a``, ``b``, items of ``embed_batch``) are audio file paths or arrays:
    ``(samples,)`` mono or ``(samples, channels)`` / ``(channels, samples)`` with at most
    8 channels (averaged to mono); float in [-1, 1] or int16 / int32 PCM (scaled);
    ``sample_rate`` is the arrays' rate (default 16000), resampled to 16 kHz; a file's rate
    comes from its header, so files and arrays mix in one call.
    Embeddings are deterministic (eval mode, no dropout, no random cropping).

    Every input goes through :class:`~voxmetric.inference.frontend.Frontend` (read,
    quality report, VAD, level, windows): the same path as validation, ``compare``,
    ``embed`` and ``calibrate``. An input without speech is a
    :class:`~voxmetric.audio.quality.NoSpeechError`.
    """

    def __init__(self, network: torch.nn.Module, name: str, calibration: Calibration | None = None,
                 threshold: float | None = None, frontend: FrontendSettings | dict = FrontendSettings(),
                 info: dict[str, Any] | None = None, vad: bool | None = None):
        settings = FrontendSettings.from_dict(frontend)
        if vad is not None:
            settings = settings.replace(vad=vad)
        self.frontend = Frontend(network.eval(), settings)
        self.network = self.frontend.network
        self.name = name
        self.calibration = calibration
        self.threshold = threshold
        self.info = info or {}

    @property
    def settings(self) -> FrontendSettings:
        """The front-end settings (VAD, windows, level)."""
        return self.frontend.settings

    @property
    def device(self) -> torch.device:
        return self.frontend.device

    @property
    def embedding_dim(self) -> int:
        return self.network.embedding_dim

    def __repr__(self) -> str:
        return (f"SpeakerModel({self.name!r}, embedding_dim={self.embedding_dim}, calibration={self.calibration}, "
                f"threshold={self.threshold}, device={str(self.device)!r})")

    def to(self, device: str | torch.device) -> "SpeakerModel":
        """Move the network to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``); returns ``self``."""
        self.frontend.to(parse_device(device))
        return self

    def set_frontend(self, **changes) -> "SpeakerModel":
        """Change front-end settings (``vad``, ``window_s``, ``step_s``, ``rms_dbfs``); returns ``self``."""
        self.frontend.settings = self.settings.replace(**changes)
        return self

    set_embedding = set_frontend

    def waveform(self, item, sample_rate: int | None = None) -> np.ndarray:
        """An input as the ``(samples,)`` 16 kHz float32 waveform the network sees."""
        return self.frontend.prepare(item, sample_rate)[0]

    def embed(self, item, sample_rate: int | None = None) -> np.ndarray:
        """Embedding of a file or array: ``(embedding_dim,)`` float32."""
        return self.frontend.embed(item, sample_rate)[0]

    def embed_with_quality(self, item, sample_rate: int | None = None):
        """``(embedding, QualityReport)`` of a file or array."""
        return self.frontend.embed(item, sample_rate)

    def embed_files(self, items: Sequence, sample_rate: int | None = None, progress: bool = False,
                    jobs: int = 1) -> np.ndarray:
        """Embeddings of several files or arrays: ``(len(items), embedding_dim)`` float32.

        ``jobs`` > 1 embeds them in that many worker processes of one thread each (0: one per
        CPU core; :mod:`voxmetric.inference.parallel`): the same embeddings, faster than threads
        on many files. The first bad input raises its error either way.
        """
        from ..fileio import progress_bar
        from .parallel import embed_in_workers, resolve_jobs

        jobs = resolve_jobs(jobs)
        items = check_several(items, "embed_files")
        if jobs == 1 or len(items) < 2:
            return self.frontend.embed_files(items, sample_rate, progress)
        rows = []
        results = embed_in_workers(self, items, jobs, sample_rate)
        with progress_bar(results, enabled=progress, desc="embedding", unit="file", leave=False,
                          total=len(items)) as bar:
            for _, result in bar:
                if isinstance(result, VoxmetricError):
                    results.close()
                    raise result
                rows.append(result[0])
        return np.stack(rows)

    embed_batch = embed_files

    @property
    def fingerprint(self) -> str:
        """``name:sha256:...`` of the network's configuration and weights: which model made an embedding."""
        import hashlib

        digest = hashlib.sha256(json.dumps(self.info.get("model"), sort_keys=True, default=str).encode())
        for key, tensor in sorted(self.network.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return f"{self.name}:sha256:{digest.hexdigest()[:32]}"

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
            f"model {self.info.get('source') or self.name} has no calibration and no decision threshold (a training "
            f"checkpoint of a run without validation trials?): "
            f"calibrate it on labelled pairs with 'voxmetric calibrate MODEL --trials PAIRS --out cal.json' "
            f"and pass --calibration cal.json (in Python: load_model(..., calibration='cal.json'))"
        )

    def _embed_side(self, item, side: str, sample_rate: int | None):
        """:meth:`embed_with_quality` of one side of :meth:`verify`; an array's errors say which side."""
        try:
            return self.embed_with_quality(item, sample_rate)
        except VoxmetricError as error:
            text = str(error)
            if isinstance(item, (str, os.PathLike)) or not text.startswith(ARRAY_NAME):
                raise
            labelled = f"{ARRAY_NAME} {side}{text[len(ARRAY_NAME):]}"
            try:
                renamed = type(error)(labelled)
            except TypeError:
                renamed = VoxmetricError(labelled)
            raise renamed from None

    def verify(self, a, b, threshold: float | None = None, sample_rate: int | None = None) -> VerifyResult:
        """Same speaker? Score, calibrated LLR and decision.

        The decision is ``score >= threshold``: ``threshold`` when given, else
        :meth:`decision_threshold` (the model's EER threshold from its validation trials).
        ``llr`` is ``None`` when the model has no calibration; it can disagree with the
        decision near the threshold (the EER point and LLR = 0 are close, not equal).
        """
        threshold = self.decision_threshold() if threshold is None else _threshold(threshold)
        (emb_a, report_a), (emb_b, report_b) = (self._embed_side(x, side, sample_rate) for x, side in ((a, "a"), (b, "b")))
        score = self.cosine(emb_a, emb_b)
        llr = None if self.calibration is None else self.calibration.llr(score)
        warnings = tuple(_named(w, x, side) for x, side, report in ((a, "a", report_a), (b, "b", report_b))
                         for w in report.warnings)
        return VerifyResult(score=score, llr=llr, accepted=bool(score >= threshold), threshold=threshold,
                            warnings=warnings)


def _threshold(value) -> float:
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = math.nan
    if isinstance(value, bool) or not math.isfinite(threshold):
        raise ArgumentError(f"threshold must be a finite number (a cosine score), got {value!r}")
    return threshold


def _named(warning: str, item, side: str | None = None) -> str:
    """A quality warning prefixed with its input's name (when it does not say it already); an
    array of one side of :meth:`SpeakerModel.verify` is ``input array a`` / ``b``."""
    source = source_name(item)
    if side is not None and source == ARRAY_NAME:
        if warning.startswith(source):
            warning = warning[len(source):].lstrip(": ")
        source = f"{ARRAY_NAME} {side}"
    return warning if warning.startswith(source) else f"{source}: {warning}"


MODEL_SETTING = "model"
"""``embed_to_file`` window / step value meaning: the model's own front-end setting."""


def embed_to_file(model_spec: str, paths: list[str], out: str, window_s: float | None | str = MODEL_SETTING,
                  step_s: float | str = MODEL_SETTING, device: str = "cpu", progress: bool = True,
                  vad: bool = True, ids: list[str] | None = None) -> tuple[int, int]:
    """``voxmetric embed``: embeddings of audio files, ids = the paths as given.

    ``model_spec`` is anything :func:`load_model` takes (a bundled name, a weights file,
    a training checkpoint); the files go through that model's front-end (its window, step
    and input level; a checkpoint's window and step are those validation chose at the end of
    training) unless ``window_s`` (``None`` = whole file) or ``step_s`` are given. With ``vad`` (the default, as for
    ``verify``) non-speech is trimmed first, so that embeddings scored here give exactly
    the scores ``verify`` prints.

    Returns:
        ``(files, dim)`` of the matrix written.
    """
    model = load_model(model_spec, device=device, vad=vad)
    if window_s != MODEL_SETTING:
        model.set_frontend(window_s=window_s)
    if step_s != MODEL_SETTING:
        model.set_frontend(step_s=step_s)
    matrix = model.embed_files(paths, progress=progress)
    save_embeddings(out, [str(p) for p in (paths if ids is None else ids)], matrix,
                    metadata={"model": model.fingerprint, "frontend": model.settings.to_dict()})
    return matrix.shape
