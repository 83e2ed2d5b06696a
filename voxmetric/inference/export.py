"""Writing models out: voxmetric weights files, and ONNX / TorchScript networks.

* :func:`export_pretrained`: a training checkpoint -> a ``voxmetric-embedding-model/1``
  safetensors file (format in :mod:`voxmetric.weights`), the form of the bundled
  models; :func:`update_manifest` records the SHA-256 of every such file in a folder.
* :func:`export_network` (``voxmetric export``): the inference network for runtimes
  without voxmetric, ``(batch, samples) -> (batch, embedding_dim)`` with variable batch
  size and length. When the model embeds whole inputs (``window_s=None``, the bundled
  models) and has a level (``rms_dbfs``), the level step is in the graph
  (:class:`LevelNormalised`: every row scaled to that RMS). What a graph cannot hold is
  written into the file for the runtime (ONNX ``metadata_props``, TorchScript extra file
  ``voxmetric.json``; :func:`deployment_metadata`): sample rate, the high-pass (its
  second-order sections), the VAD settings, the front-end settings, threshold,
  calibration and the model's fingerprint. README, "Deploying an exported model", has the
  runtime recipe with onnxruntime.

How each format is produced (torch 2.13), and checked after writing on three input
lengths (it must match PyTorch within :data:`TOLERANCE`, or the export fails):

* ``torchscript``: ``torch.jit.trace`` (``torch.jit.script`` cannot compile the models'
  float32 feature block). The traced graph has no data-dependent branches here, so it
  generalises over batch size and length; inputs shorter than the model's
  ``min_samples`` are not refused by the traced program, so check lengths yourself.
* ``onnx``: the TorchScript-based ONNX exporter with dynamic axes where it can (SincTDNN);
  models with MFCC / filterbank front ends (XVector, ECAPA-TDNN) use ``Tensor.unfold``,
  which that exporter cannot export with a dynamic length, so they go through the
  ``torch.export`` based exporter (``dynamo=True``, needs ``onnxscript``). Verification
  needs ``onnxruntime``. Install all three with ``pip install voxmetric[onnx]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ExportError
from ..evaluate.calibration import Calibration
from ..fileio import atomic_path
from .frontend import FrontendSettings
from .loading import load_network
from .weights import sha256, write_weights
from .weights import update_manifest  # noqa: F401  (part of this module's API too)
from .deployment import (METADATA_FORMAT, LevelNormalised, _quiet, deployment_metadata, graph_module,  # noqa: F401
                         read_metadata)

FORMATS = ("onnx", "torchscript")
"""Formats :func:`export_network` writes."""

TOLERANCE = 1e-4
"""Largest absolute difference from PyTorch's embeddings an exported network may show."""


# --- voxmetric weights files (format: voxmetric.weights) -------------------------------


def export_pretrained(
    checkpoint_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    calibration: Calibration | dict | None,
    threshold: float | None,
    embedding_settings: FrontendSettings | dict,
    description: str,
    training_info: dict[str, Any] | None = None,
    dtype: str = "float16",
) -> dict[str, Any]:
    """Write a training checkpoint's embedding network as a weights file (atomically).

    Args:
        checkpoint_path: a ``voxmetric train`` checkpoint (``best.pt``, ``last.pt``).
        out_path: the ``.safetensors`` file to write.
        calibration: ``llr = scale * cosine + offset`` (:class:`Calibration` or dict), or None.
        threshold: cosine decision threshold (the validation EER point), or None.
        embedding_settings: the front-end settings (``{"vad", "window_s", "step_s", "rms_dbfs"}``) the model is used with.
        description: one line for humans.
        training_info: free JSON-serialisable facts (data, recipe, validation figures).
        dtype: ``"float16"`` (half the size) or ``"float32"`` for floating tensors;
            integer buffers are stored as they are.

    Returns:
        ``{"path", "sha256", "bytes", "min_cosine_vs_float32"}``: the last is the
        cosine similarity between the stored network's and the float32 network's
        embeddings of a fixed test signal (1.0 = no loss from rounding).
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    if Path(out_path).suffix != ".safetensors":
        raise ValueError(f"{out_path}: weights files end in .safetensors")
    network, source = load_network(checkpoint_path)
    storage = getattr(torch, dtype)
    tensors = {}
    for key, value in network.state_dict().items():
        if value.is_floating_point():
            if dtype == "float16" and value.abs().max() > torch.finfo(torch.float16).max:
                raise ExportError(f"{checkpoint_path}: {key} holds values beyond float16's range; use dtype='float32'")
            value = value.to(storage)
        tensors[key] = value.contiguous()
    metadata = {
        "model": {"name": network.config["name"], "params": source.model.get("params", {})},
        "calibration": None if calibration is None else Calibration.from_dict(calibration).to_dict(),
        "threshold": None if threshold is None else float(threshold),
        "embedding": FrontendSettings.from_dict(embedding_settings).to_dict(),
        "description": str(description),
        "training": training_info or {},
    }
    write_weights(out_path, tensors, metadata)
    return {"path": os.fspath(out_path), "sha256": sha256(out_path), "bytes": os.path.getsize(out_path),
            "min_cosine_vs_float32": _rounding_cosine(network, tensors)}


def _rounding_cosine(network: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> float:
    """Cosine between embeddings before and after storing the weights (fixed test signals)."""
    import copy

    rounded = copy.deepcopy(network)
    rounded.load_state_dict({key: value.float() if value.is_floating_point() else value
                             for key, value in tensors.items()})
    length = max(network.min_samples, 32000)
    generator = torch.Generator().manual_seed(0)
    signals = 0.1 * torch.randn(4, length, generator=generator)
    with torch.inference_mode():
        cosine = torch.nn.functional.cosine_similarity(network.eval()(signals), rounded.eval()(signals), dim=1)
    return float(cosine.min())


# --- ONNX / TorchScript ---------------------------------------------------------------

def check_lengths(network: torch.nn.Module) -> list[int]:
    """Three input lengths (samples) the exported network is checked on: odd sizes, >= 1 s."""
    base = max(int(network.min_samples), 16000)
    return [base + 37, int(base * 1.7) + 101, 3 * base + 11]


def export_network(name_or_path: str | os.PathLike, format: str, out_path: str | os.PathLike) -> dict[str, Any]:
    """Export a model's network for inference (module docstring); verify it against PyTorch.

    Args:
        name_or_path: a bundled model name, weights file or training checkpoint.
        format: one of :data:`FORMATS`.
        out_path: the file to write (atomically).

    Returns:
        ``{"format", "path", "exporter", "max_abs_diff": {length: diff}, "verified",
        "level_in_graph", "min_samples"}``; ``verified`` is False only for ONNX without ``onnxruntime``
        installed. The file carries :func:`deployment_metadata` (:func:`read_metadata`).

    Raises:
        ExportError: unknown format, a missing optional package, an exporter failure,
            or an exported network that does not match PyTorch within :data:`TOLERANCE`.
    """
    from .speaker_model import load_model

    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; allowed: {', '.join(FORMATS)}")
    model = load_model(name_or_path)
    network = model.network.eval()
    graph, level_in_graph = graph_module(model)
    metadata = deployment_metadata(model, level_in_graph)
    example = _test_signal(2, 2 * max(int(network.min_samples), 16000))
    with atomic_path(out_path) as tmp:
        if format == "torchscript":
            exporter = _export_torchscript(graph, example, tmp, metadata)
            runner = _torchscript_runner(tmp)
        else:
            exporter = _export_onnx(graph, network, example, tmp, metadata)
            runner = _onnx_runner(tmp)
        diffs = _compare(graph, runner, check_lengths(network)) if runner else {}
        bad = {length: diff for length, diff in diffs.items() if not diff <= TOLERANCE}
        if bad:
            raise ExportError(
                f"the {format} export ({exporter}) of {os.fspath(name_or_path)} does not match PyTorch: "
                f"max abs difference {max(bad.values()):.3g} > {TOLERANCE} at length(s) {sorted(bad)} samples "
                f"(the exporter probably fixed the input length)"
            )
    return {"format": format, "path": os.fspath(out_path), "exporter": exporter, "max_abs_diff": diffs,
            "verified": runner is not None, "level_in_graph": level_in_graph, "min_samples": int(network.min_samples)}


def _test_signal(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, length, generator=torch.Generator().manual_seed(seed))


def _export_torchscript(network: torch.nn.Module, example: torch.Tensor, path: str,
                        metadata: dict[str, str]) -> str:
    import json

    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(network, example, check_trace=False)
        torch.jit.save(traced, path, _extra_files={"voxmetric.json": json.dumps(metadata)})
    return "torch.jit.trace"


def _write_onnx_metadata(path: str, metadata: dict[str, str]) -> None:
    try:
        import onnx
    except ImportError:
        raise ExportError("writing the deployment metadata into the ONNX file needs the onnx package: "
                          "pip install 'voxmetric[onnx]'") from None

    proto = onnx.load(path)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, path)


def _torchscript_runner(path: str):
    with _quiet():
        loaded = torch.jit.load(path).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(batch)).numpy()

    return run


def _export_onnx(graph: torch.nn.Module, network: torch.nn.Module, example: torch.Tensor, path: str,
                 metadata: dict[str, str]) -> str:
    exporter = _export_onnx_graph(graph, network, example, path)
    _write_onnx_metadata(path, metadata)
    return exporter


def _export_onnx_graph(graph: torch.nn.Module, network: torch.nn.Module, example: torch.Tensor, path: str) -> str:
    names = {"input_names": ["waveforms"], "output_names": ["embeddings"]}
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(graph, (example,), path, dynamo=False, opset_version=17,
                              dynamic_axes={"waveforms": {0: "batch", 1: "samples"}, "embeddings": {0: "batch"}},
                              **names)
        return "torch.onnx (TorchScript-based)"
    except Exception as legacy_error:  # e.g. Unfold with a dynamic length: try torch.export
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter's dependency)
        except ImportError:
            raise ExportError(f"ONNX export failed ({str(legacy_error).splitlines()[0]}) and the torch.export "
                              f"based exporter needs onnxscript: pip install 'voxmetric[onnx]'") from None
    samples = torch.export.Dim("samples", min=int(network.min_samples) + int(network.frame_hop_samples))
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(graph, (example,), path, dynamo=True, external_data=False,
                              dynamic_shapes=({0: torch.export.Dim("batch"), 1: samples},), **names)
    except Exception as error:
        raise ExportError(f"ONNX export failed with both exporters ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''})") from None
    return "torch.onnx (torch.export-based)"


def _onnx_runner(path: str):
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"waveforms": batch})[0]


def _compare(network: torch.nn.Module, run, lengths: list[int]) -> dict[int, float]:
    """Max abs difference between ``run`` and the network, batch of 2, per length."""
    diffs = {}
    for i, length in enumerate(lengths):
        batch = _test_signal(2, length, seed=1 + i)
        with torch.inference_mode():
            expected = network(batch).numpy()
        diffs[length] = float(np.abs(run(batch.numpy()) - expected).max())
    return diffs
