"""What an exported network carries for a runtime: the level step in the graph where it can
go (:class:`LevelNormalised`), and in its metadata everything the front-end does outside it
(sample rate, high-pass, VAD, windows, threshold, calibration, fingerprint)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import warnings
from typing import Any

import torch

from ..errors import ExportError

METADATA_FORMAT = "voxmetric-exported-network/1"
"""``format`` value of the metadata written into exported networks."""


class LevelNormalised(torch.nn.Module):
    """The front-end's level step in the graph: each row scaled to ``rms_dbfs`` RMS, then the network.

    The front-end refuses input below -90 dBFS as silent; in the graph the RMS is floored
    at 1e-9 so that silence gives a finite (meaningless) embedding instead of NaN.
    """

    def __init__(self, network: torch.nn.Module, rms_dbfs: float):
        super().__init__()
        self.network = network
        self.target_rms = float(10 ** (rms_dbfs / 20))

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        rms = waveforms.square().mean(dim=1, keepdim=True).sqrt().clamp(min=1e-9)
        return self.network(waveforms * (self.target_rms / rms))


def graph_module(model) -> tuple[torch.nn.Module, bool]:
    """``(module, level_in_graph)``: what :func:`export_network` exports for a :class:`SpeakerModel`.

    The level step goes in the graph only for whole-input models (``window_s=None``): with
    sliding windows the front-end scales the whole recording once, not each window.
    """
    settings = model.settings
    if settings.rms_dbfs is not None and settings.window_s is None:
        return LevelNormalised(model.network, settings.rms_dbfs).eval(), True
    return model.network.eval(), False


def deployment_metadata(model, level_in_graph: bool) -> dict[str, str]:
    """What a runtime must do outside the exported graph, as ``{key: string}`` (JSON values).

    Keys: ``format``, ``sample_rate_hz``, ``input``, ``highpass``, ``vad``, ``frontend``,
    ``level_in_graph``, ``threshold``, ``calibration``, ``model_fingerprint``, ``model``,
    ``max_whole_s``, ``recipe``.
    """
    import json
    from dataclasses import asdict

    from ..audio.vad import DEFAULT_CONFIG, HIGHPASS_ORDER, highpass_sos
    from ..evaluate.extract import MAX_WHOLE_S

    settings = model.settings
    cutoff = DEFAULT_CONFIG.highpass_hz
    highpass = None if cutoff is None else {
        "filter": f"Butterworth high-pass, order {HIGHPASS_ORDER}, causal (scipy.signal.sosfilt), 16 kHz",
        "cutoff_hz": cutoff, "sos": highpass_sos(16000, cutoff).tolist(),
        "initial_state": "sosfilt_zi(sos) * first sample (no start-up transient on a DC offset)"}
    vad = {**asdict(DEFAULT_CONFIG.without_highpass()), "margin_s": 0.1, "enabled": settings.vad,
           "how": "voxmetric.audio.vad.speech_segments + trim_silence(margin_s) on the high-passed 16 kHz waveform; "
                  "without this step embeddings differ (silences and pauses are embedded too)"}
    if not level_in_graph and settings.rms_dbfs is not None:
        level = f"scale the whole (trimmed) waveform to {settings.rms_dbfs} dBFS RMS before windowing"
    else:
        level = "in the graph" if level_in_graph else "none"
    windows = ("whole input in one call" if settings.window_s is None else
               f"mean of the graph's embeddings of {settings.window_s} s windows every {settings.step_s} s "
               f"(voxmetric.evaluate.extract.window_starts: last window aligned to the end)")
    recipe = ("read -> mono float32 -> resample to 16 kHz -> high-pass (highpass) -> VAD trim (vad) -> "
              f"level: {level} -> embedding: {windows} -> cosine similarity of two embeddings; "
              f"accept when cosine >= threshold; llr = calibration.scale * cosine + calibration.offset")
    values = {
        "format": METADATA_FORMAT,
        "sample_rate_hz": 16000,
        "input": "waveforms: (batch, samples) float32, mono, 16 kHz, in [-1, 1]; output embeddings (batch, dim)",
        "highpass": highpass,
        "vad": vad,
        "frontend": settings.to_dict(),
        "level_in_graph": level_in_graph,
        "threshold": model.threshold,
        "calibration": None if model.calibration is None else model.calibration.to_dict(),
        "model_fingerprint": model.fingerprint,
        "model": model.info.get("model"),
        "max_whole_s": MAX_WHOLE_S if settings.window_s is None and not getattr(
            model.network, "frames_are_local", False) else None,
        "recipe": recipe,
    }
    return {key: json.dumps(value, default=str) for key, value in values.items()}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The :func:`deployment_metadata` of an exported ONNX or TorchScript file, JSON-decoded.

    Raises:
        ExportError: a missing file, a folder, or a file that is not such an export (one line).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExportError(f"{path}: {'is a folder' if os.path.isdir(path) else 'no such file'}, not an exported model")
    try:
        if path.endswith(".onnx"):
            import onnx

            props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        else:
            files = {"voxmetric.json": ""}
            with _quiet():
                torch.jit.load(path, _extra_files=files)
            props = json.loads(files["voxmetric.json"])
        return {key: json.loads(value) for key, value in props.items()}
    except Exception as error:  # noqa: BLE001 - onnx / torch readers raise many kinds on foreign files
        kind = "ONNX" if path.endswith(".onnx") else "TorchScript"
        raise ExportError(f"{path}: not a voxmetric {kind} export ({type(error).__name__})") from None


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' deprecation warnings, log lines and progress prints.

    The TorchScript-based ONNX exporter prints the whole graph from C++ to file
    standard output when it fails (its log switch is always on in torch 2.13), so file
    descriptors 1 and 2 themselves point at /dev/null for the duration.
    """
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    null_fd = os.open(os.devnull, os.O_WRONLY)
    for fd in saved:
        os.dup2(null_fd, fd)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null_fd)
        logger.setLevel(level)
