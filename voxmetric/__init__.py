"""voxmetric: end-to-end speaker verification with metric learning."""

from .errors import VoxmetricError

__version__ = "0.1.0"

__all__ = ["VoxmetricError", "__version__"]
