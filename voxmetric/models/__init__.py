"""Embedding networks and the registry that builds them by name from a config.

>>> model = build_model("sinctdnn", tdnn_channels=128, tdnn_stats_channels=384, embedding_dim=64)
>>> model.config["name"], model.embedding_dim
('sincnet_tdnn', 64)

Every model is an :class:`EmbeddingModel`: waveforms ``(batch, samples)`` at 16 kHz
-> embeddings ``(batch, embedding_dim)``, in two stages (``frames``, ``embed_frames``).
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import ConfigError
from .base import EmbeddingModel, InputTooShortError
from .ecapa import ECAPA_TDNN
from .features import MFCC, Fbank
from .sincnet import SincConv1d, SincNet
from .sinctdnn import SincTDNN
from .tdnn import TDNN, XVector

MODELS: dict[str, type[EmbeddingModel]] = {
    "sincnet_tdnn": SincTDNN,
    "xvector": XVector,
    "ecapa_tdnn": ECAPA_TDNN,
}
"""Canonical model names and their classes."""

ALIASES: dict[str, str] = {"sinctdnn": "sincnet_tdnn", "ecapa": "ecapa_tdnn"}
"""Other accepted names -> canonical name."""


def canonical_name(name: str) -> str:
    """The canonical registry name of ``name`` (an alias or a canonical name)."""
    name = ALIASES.get(name, name)
    if name not in MODELS:
        allowed = sorted(MODELS) + sorted(ALIASES)
        raise ConfigError(f"unknown model {name!r}; allowed: {', '.join(allowed)}")
    return name


def model_parameters(name: str) -> dict[str, Any]:
    """Constructor parameters of model ``name`` and their defaults."""
    signature = inspect.signature(MODELS[canonical_name(name)].__init__)
    return {key: param.default for key, param in list(signature.parameters.items())[1:]}


def build_model(name: str, **params: Any) -> EmbeddingModel:
    """Build the model registered as ``name`` with constructor arguments ``params``.

    The returned model carries ``model.config``: the canonical name and every constructor
    argument (defaults filled in, tuples as lists) so that ``build_model(**model.config)``
    rebuilds it and the dict can be saved as YAML/JSON beside the weights.

    Raises
    ------
    ConfigError
        Unknown name (the message lists the allowed names), unknown parameter (names it and
        lists the accepted ones), or a value the constructor rejects (names the parameter).
    """
    canonical = canonical_name(name)
    defaults = model_parameters(canonical)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ConfigError(
            f"model {name!r}: unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(defaults)}"
        )
    try:
        model = MODELS[canonical](**params)
    except ConfigError as error:
        raise ConfigError(f"model {name!r}: {error}") from None
    config = {**defaults, **params}
    model.config = {"name": canonical, **{key: list(v) if isinstance(v, tuple) else v for key, v in config.items()}}
    return model


__all__ = [
    "ALIASES",
    "ECAPA_TDNN",
    "MFCC",
    "MODELS",
    "TDNN",
    "EmbeddingModel",
    "Fbank",
    "InputTooShortError",
    "SincConv1d",
    "SincNet",
    "SincTDNN",
    "XVector",
    "build_model",
    "canonical_name",
    "model_parameters",
]
