"""voxmetric: end-to-end speaker verification with metric learning."""

from .errors import VoxmetricError

from ._version import __version__

__all__ = ["VoxmetricError", "__version__", "load_model"]


def __getattr__(name: str):
    # load_model imports torch; resolved on first use so that ``import voxmetric`` stays light.
    if name == "load_model":
        from .inference.speaker_model import load_model

        return load_model
    raise AttributeError(f"module 'voxmetric' has no attribute {name!r}")
