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
from ..fileio import check_writable

# torch is imported only when a model is exported: building the command line (these
# constants) stays fast.
ENDINGS = {"onnx": (".onnx",), "torchscript": (".pt", ".pth"), "safetensors": (".safetensors",)}
"""Each format's file name endings: a name ending as another format's is refused (``model.safetensors``
written as ONNX would replace a weights file by a file no command reads)."""

EXPORT_FORMATS = tuple(ENDINGS)
"""``voxmetric export --format`` choices: :data:`voxmetric.inference.export.FORMATS` and ``safetensors``."""


def export_model(model_spec: str, format: str, out: str, calibration: str | None = None,
                 dtype: str = "float16") -> dict[str, Any]:
    """Export ``model_spec`` (bundled name, weights file or checkpoint) as ``format`` to ``out``.

    For ``safetensors``, ``calibration`` (a ``voxmetric calibrate`` JSON file) replaces the
    model's calibration and threshold (a training checkpoint has those fitted on its validation trials, if any).

    Returns:
        ``export_network``'s report, or ``{"format": "safetensors", "path", "sha256",
        "bytes", "min_cosine_vs_float32", "calibrated"}``.

    Raises:
        UsageError: unknown format, ``--calibration`` with ONNX / TorchScript, a
            safetensors name without the ending, a name ending as another format's.
        WriteError: ``out`` cannot be written (checked before the model is read).
        CheckpointError, ExportError: unreadable model, export failure.
        VoxmetricError: a calibration made for another model.
    """
    from ..inference.export import export_network, export_pretrained
    from ..inference.loading import read_source

    if format not in EXPORT_FORMATS:
        raise UsageError(f"--format {format}: use one of {', '.join(EXPORT_FORMATS)}")
    check_ending(format, out)
    if format != "safetensors" and calibration:
        raise UsageError("--calibration is stored only in safetensors exports (--format safetensors)")
    check_writable(out)
    if format != "safetensors":
        return export_network(model_spec, format, out)
    source = read_source(model_spec)
    cal, threshold = source.calibration, source.threshold
    if calibration:
        from ..inference.speaker_model import load_model

        # load_model refuses a calibration made for another model (its fingerprint check).
        calibrated = load_model(model_spec, calibration=calibration)
        cal, threshold = calibrated.calibration, calibrated.threshold
    report = export_pretrained(model_spec, out, calibration=cal, threshold=threshold,
                               embedding_settings=source.frontend,
                               description=source.description or f"exported from {os.fspath(model_spec)}",
                               training_info=source.training, dtype=dtype)
    return {"format": "safetensors", **report, "calibrated": cal is not None}


def check_ending(format: str, out: str | os.PathLike) -> None:
    """Refuse an output name whose ending is another format's (:data:`ENDINGS`); a safetensors
    file must end in ``.safetensors`` (the ending is how every command recognises it).

    Raises:
        UsageError: naming the file and the ending expected.
    """
    name = os.fspath(out)
    if format == "safetensors" and not name.endswith(".safetensors"):
        raise UsageError(f"{out}: a voxmetric weights file must end in .safetensors")
    other = next(((fmt, ending) for fmt, endings in ENDINGS.items() if fmt != format for ending in endings
                  if name.lower().endswith(ending)), None)
    if other:
        raise UsageError(f"{out}: a {other[1]} name is for {_TITLES[other[0]]} files; name the {_TITLES[format]} "
                         f"file {' or '.join('*' + ending for ending in ENDINGS[format])}")


_TITLES = {"onnx": "ONNX", "torchscript": "TorchScript", "safetensors": "voxmetric weights"}
