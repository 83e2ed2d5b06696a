"""Embedding networks and the registry that builds them by name from a config.

>>> model = build_model("sinctdnn", tdnn_channels=128, tdnn_stats_channels=384, embedding_dim=64)
>>> model.config["name"], model.embedding_dim
('sincnet_tdnn', 64)

Every model is an :class:`EmbeddingModel`: waveforms ``(batch, samples)`` at 16 kHz
-> embeddings ``(batch, embedding_dim)``, in two stages (``frames``, ``embed_frames``).
"""

from __future__ import annotations

from typing import Any

from ..checks import Registry
from ..errors import ConfigError
from .base import EmbeddingModel, InputTooShortError
from .ecapa import ECAPA_TDNN
from .features import MFCC, Fbank
from .sincnet import SincConv1d, SincNet
from .sinctdnn import SincTDNN
from .tdnn import TDNN, XVector

MODELS = Registry("model", {
    "sincnet_tdnn": SincTDNN,
    "xvector": XVector,
    "ecapa_tdnn": ECAPA_TDNN,
}, aliases={"sinctdnn": "sincnet_tdnn", "ecapa": "ecapa_tdnn"})
"""Canonical model names and their classes; ``MODELS.aliases`` are other accepted names."""

ALIASES = MODELS.aliases


def canonical_name(name: str) -> str:
    """The canonical registry name of ``name`` (an alias or a canonical name)."""
    return MODELS.canonical(name)


def model_parameters(name: str) -> dict[str, Any]:
    """Constructor parameters of model ``name`` and their defaults."""
    return MODELS.parameters(name)


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
    canonical = MODELS.canonical(name)
    try:
        model = MODELS.build(canonical, params)
    except ConfigError as error:
        raise ConfigError(f"model {name!r}: {error}") from None
    config = {**MODELS.parameters(canonical), **params}
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
