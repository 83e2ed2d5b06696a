"""User-facing errors.

Every problem caused by the user's input (a file, a config field, a trial line)
is raised as a :class:`VoxmetricError` subclass whose message names the file or
field and says what is wrong. The command line prints the message on one line
and exits non-zero instead of showing a traceback.
"""


class VoxmetricError(Exception):
    """Base class of errors caused by user input (files, configs, arguments)."""


class AudioError(VoxmetricError):
    """An audio file is missing, empty, corrupt, unsupported or holds bad samples."""


class CorpusError(VoxmetricError):
    """A corpus directory or list is missing, malformed or inconsistent."""


class TrialsError(VoxmetricError):
    """A trial list is missing, malformed, or references unknown files."""


class ConfigError(VoxmetricError):
    """A configuration value is unknown, of the wrong type or impossible."""


class CheckpointError(VoxmetricError):
    """A checkpoint or weights file is missing, corrupt, or not trusted."""


class TrainingError(VoxmetricError):
    """Training cannot go on (e.g. the loss diverged to NaN); the message says what to change."""
