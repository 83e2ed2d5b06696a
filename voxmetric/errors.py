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


class ArgumentError(ConfigError, ValueError):
    """A wrong value passed to the Python API (a front-end setting, a calibration, a threshold,
    a sample rate); also a ``ValueError`` for code that catches those."""


class CheckpointError(VoxmetricError):
    """A checkpoint or weights file is missing, corrupt, or not trusted."""


class TrainingError(VoxmetricError):
    """Training cannot go on (e.g. the loss diverged to NaN); the message says what to change."""


class EmbeddingsError(VoxmetricError):
    """An embeddings file is missing, corrupt, of an unknown format or inconsistent."""


class ScoresError(VoxmetricError):
    """Scores or labels cannot be evaluated (no targets, NaN scores, bad labels)."""


class SpeakerDBError(VoxmetricError):
    """A speaker database is missing, not a voxmetric database, or used inconsistently."""


class ModelMismatchError(SpeakerDBError):
    """The database holds embeddings of another model."""


class UnknownSpeakerError(SpeakerDBError):
    """No speaker of that name is enrolled."""


class CalibrationError(VoxmetricError):
    """Calibration pairs or a calibration file are unusable (the message says why)."""


class NoSpeechError(VoxmetricError):
    """A recording holds no speech (silence, steady noise or hum): there is nothing to verify."""


class WriteError(VoxmetricError):
    """An output file cannot be written; ``reason`` is the system's word for why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: cannot write ({reason})")
        self.path, self.reason = path, reason


class ExportError(VoxmetricError):
    """A model cannot be exported in the asked format, or the export does not match PyTorch."""


class InputTooShortError(AudioError):
    """A waveform is shorter than the shortest input a model can embed."""


class ServeError(VoxmetricError):
    """The service cannot start as configured (token, limits, database)."""


class UploadError(VoxmetricError):
    """A request's upload is missing, malformed, too large or not audio; ``status`` is the HTTP status."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class UploadTooLarge(UploadError):
    status = 413


class UnsupportedUpload(UploadError):
    status = 415


class ApiError(Exception):
    """An HTTP error with a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
class UsageError(VoxmetricError):
    """Arguments that do not fit together (a missing option, a wrong count of files): the
    command line prints the command's usage with the message and exits with status 2."""


class OverrideError(ConfigError, UsageError):
    """A ``--set KEY=VALUE`` override that is not of that form (a usage error, exit status 2)."""


class NotAModelError(CheckpointError, UsageError):
    """The MODEL argument names an audio file (arguments in the wrong order?)."""


class Interrupted(KeyboardInterrupt):
    """Work stopped by a signal after saving what it could; ``signal`` is its number (the CLI
    exits with 128 + signal: 130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, signal: int = 2):
        super().__init__(message)
        self.signal = signal
