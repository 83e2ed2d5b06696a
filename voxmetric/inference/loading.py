"""The one path from a model file to a network: bundled name, weights file or checkpoint.

Three kinds of ``name_or_path``:

* a bundled name (:data:`BUNDLED`): ``voxmetric/inference/bundled/<name>.safetensors``,
  its SHA-256 checked against the ``manifest.json`` beside it before anything is read;
* an exported weights file ``*.safetensors`` (:mod:`voxmetric.inference.weights`);
* a training checkpoint ``*.pt`` (:mod:`voxmetric.inference.checkpoint`): its front-end
  settings are its config's, with the window and step validation chose at the end of training,
  and (``best.pt``, or ``last.pt`` of a run without one) the calibration and EER threshold
  fitted on those validation scores (:mod:`voxmetric.training.frontend_select`); none when the
  run had no validation trials.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checks import parse_device
from ..audio.io import CONTAINER_EXTENSIONS, readable_extensions
from ..errors import CheckpointError, NotAModelError
from ..evaluate.calibration import Calibration
from .checkpoint import load_checkpoint
from .frontend import FrontendSettings
from .weights import check_manifest, load_weights_checked, read_weights

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED = ("sinctdnn-aam", "ecapa-aam")
"""Names of the models shipped with voxmetric (``voxmetric/inference/bundled/<name>.safetensors``)."""


@dataclass
class ModelSource:
    """What a model file holds: architecture, weights and metadata.

    Attributes:
        kind: ``"bundled"``, ``"weights"`` or ``"checkpoint"``.
        path: the file read.
        model: ``{"name": registry name, "params": constructor arguments}``.
        weights: the embedding network's state dict.
        calibration, threshold: as stored (``None`` when the file has none).
        frontend: the :class:`FrontendSettings` the model is meant to be used with.
        description, training: free facts for humans.
    """

    kind: str
    path: Path
    model: dict[str, Any]
    weights: dict[str, torch.Tensor]
    calibration: Any = None
    threshold: float | None = None
    frontend: FrontendSettings = field(default_factory=FrontendSettings)
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)


def resolve(name_or_path: str | os.PathLike) -> tuple[str, Path]:
    """``(kind, path)``: kind ``"bundled"``, ``"weights"`` or ``"checkpoint"``.

    Raises:
        CheckpointError: neither a bundled name nor an existing file (the message lists both).
    """
    text = os.fspath(name_or_path)
    if text in BUNDLED:
        path = BUNDLED_DIR / f"{text}.safetensors"
        if not path.is_file():
            raise CheckpointError(f"bundled model {text!r} is not installed ({path} is missing); reinstall voxmetric")
        return "bundled", path
    path = Path(text)
    if path.suffix.lower() in readable_extensions() + CONTAINER_EXTENSIONS + (".mp3",):
        raise NotAModelError(f"{text} is not a model but an audio file: give MODEL first (a bundled name: "
                             f"{', '.join(BUNDLED)}, a .safetensors weights file or a training checkpoint), "
                             f"then the audio")
    if not path.is_file():
        raise CheckpointError(f"{text!r} is neither a bundled model ({', '.join(BUNDLED)}) nor an existing file")
    return ("weights" if path.suffix == ".safetensors" else "checkpoint"), path


def read_source(name_or_path: str | os.PathLike) -> ModelSource:
    """Read a bundled model, weights file or checkpoint (nothing is built yet)."""
    kind, path = resolve(name_or_path)
    if kind == "checkpoint":
        state = load_checkpoint(path)
        try:
            model, weights = state["config"]["model"], state["model"]
        except (KeyError, TypeError):
            raise CheckpointError(f"{path}: checkpoint has no model config and weights") from None
        try:
            frontend = FrontendSettings.from_dict(state.get("frontend") or {})
            calibration = state.get("calibration")
            calibration = None if calibration is None else Calibration.from_dict(calibration)
            threshold = state.get("threshold")
            threshold = None if threshold is None else float(threshold)
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{path}: bad front-end settings or calibration ({error})") from None
        return ModelSource(kind, path, model, weights, calibration=calibration, threshold=threshold,
                           frontend=frontend, description=f"training checkpoint {path}")
    check_manifest(path, required=kind == "bundled")
    weights, metadata = read_weights(path)
    return ModelSource(kind, path, metadata["model"], weights, calibration=metadata["calibration"],
                       threshold=metadata["threshold"], frontend=metadata["embedding"],
                       description=metadata.get("description", ""), training=metadata.get("training") or {})


def build_network(model: dict[str, Any], weights: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    """The network ``model`` describes, with ``weights`` loaded, in eval mode.

    Raises:
        CheckpointError: unknown architecture or parameters, or weights that do not fit it.
    """
    from ..errors import ConfigError
    from ..models import build_model

    try:
        network = build_model(model["name"], **model["params"])
    except (ConfigError, KeyError, TypeError) as error:
        raise CheckpointError(f"{source}: cannot build the model it describes ({error})") from None
    load_weights_checked(network, weights, source)
    return network.eval()


def load_network(name_or_path: str | os.PathLike) -> tuple[torch.nn.Module, ModelSource]:
    """``(network in eval mode, source)`` of any model file."""
    source = read_source(name_or_path)
    return build_network(source.model, source.weights, str(source.path)), source


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
    source = read_source(name_or_path)
    try:
        load_weights_checked(network, source.weights, f"init_from {os.fspath(name_or_path)!r}")
    except CheckpointError as error:
        own = getattr(network, "config", None)
        raise CheckpointError(f"{error}. The source is model {source.model['name']!r} with params "
                              f"{json.dumps(source.model['params'])}; the config's model is {json.dumps(own)}: "
                              f"make the config's model section match it") from None
    return source.model


def device(name: str | torch.device) -> torch.device:
    """A usable torch device for inference (``cpu``, ``cuda``, ``cuda:N``)."""
    return parse_device(name, "device")
