"""Compatibility name: the pretrained-model API lives in :mod:`voxmetric.inference.speaker_model`."""

from .inference.speaker_model import BUNDLED, SpeakerModel, VerifyResult, load_model

__all__ = ["BUNDLED", "SpeakerModel", "VerifyResult", "load_model"]
