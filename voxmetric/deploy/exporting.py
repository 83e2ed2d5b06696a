"""``voxmetric export``: a model file to ONNX, TorchScript or a voxmetric weights file.

ONNX and TorchScript go through :func:`voxmetric.inference.export.export_network` (the
network only); ``safetensors`` writes a voxmetric weights file
(:func:`voxmetric.inference.export.export_pretrained`) with the model's front-end settings,
calibration and threshold, loadable by ``load_model`` and every command.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import UsageError
from ..inference.export import FORMATS, export_network, export_pretrained
from ..inference.loading import read_source

EXPORT_FORMATS = FORMATS + ("safetensors",)
"""``voxmetric export --format`` choices."""


def export_model(model_spec: str, format: str, out: str, calibration: str | None = None,
                 dtype: str = "float16") -> dict[str, Any]:
    """Export ``model_spec`` (bundled name, weights file or checkpoint) as ``format`` to ``out``.

    For ``safetensors``, ``calibration`` (a ``voxmetric calibrate`` JSON file) replaces the
    model's calibration and threshold; a training checkpoint has neither without it.

    Returns:
        ``export_network``'s report, or ``{"format": "safetensors", "path", "sha256",
        "bytes", "min_cosine_vs_float32", "calibrated"}``.

    Raises:
        UsageError: unknown format, ``--calibration`` with ONNX / TorchScript, a
            safetensors name without the ending.
        CheckpointError, ExportError: unreadable model, export failure.
    """
    if format not in EXPORT_FORMATS:
        raise UsageError(f"--format {format}: use one of {', '.join(EXPORT_FORMATS)}")
    if format != "safetensors":
        if calibration:
            raise UsageError("--calibration is stored only in safetensors exports (--format safetensors)")
        return export_network(model_spec, format, out)
    if not os.fspath(out).endswith(".safetensors"):
        raise UsageError(f"{out}: a voxmetric weights file must end in .safetensors")
    source = read_source(model_spec)
    cal, threshold = source.calibration, source.threshold
    if calibration:
        from ..evaluate.operating_point import CalibrationResult

        fitted = CalibrationResult.load(calibration)
        cal, threshold = fitted.calibration, fitted.threshold
    report = export_pretrained(model_spec, out, calibration=cal, threshold=threshold,
                               embedding_settings=source.frontend,
                               description=source.description or f"exported from {os.fspath(model_spec)}",
                               training_info=source.training, dtype=dtype)
    return {"format": "safetensors", **report, "calibrated": cal is not None}
