"""Settings of the HTTP service and its bearer token (``--token-file`` or ``VOXMETRIC_TOKEN``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...errors import ServeError

TOKEN_ENV = "VOXMETRIC_TOKEN"
"""Environment variable holding the bearer token when no ``--token-file`` is given."""

MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class ServeSettings:
    """How the service runs.

    Attributes:
        token: bearer token for the protected endpoints (``None``: only ``open_verify``).
        db: speaker database file for enrol / identify / verify-by-name (``None``: those
            endpoints answer 404).
        open_verify: verification of two uploads needs no token.
        max_upload_bytes: largest request body (all uploads together).
        max_audio_s: longest recording accepted, in seconds.
        workers: inference threads (requests beyond ``workers + max_queue`` get 503, counted
            from before their body is read).
        max_queue: requests allowed to wait for a worker (or still sending their body).
        upload_timeout_s: longest time a client may take to send its request body (then 408).
    """

    token: str | None = None
    db: str | None = None
    open_verify: bool = False
    max_upload_bytes: int = 20_000_000
    max_audio_s: float = 600.0
    workers: int = 2
    max_queue: int = 64
    upload_timeout_s: float = 60.0

    def check(self) -> "ServeSettings":
        """Refuse configurations that would expose the speaker database or serve nothing."""
        if self.token is None and self.db is not None:
            raise ServeError(f"serve --db {self.db}: enrol, identify and delete need a bearer token; give "
                             f"--token-file FILE or set {TOKEN_ENV} (the server does not start these without one)")
        if self.token is None and not self.open_verify:
            raise ServeError(f"serve: no token; give --token-file FILE or set {TOKEN_ENV}, or --open-verify to "
                             f"serve only verification of two uploads without one")
        if self.max_upload_bytes < 1024:
            raise ServeError(f"serve: the upload limit must be at least 1 KB, got {self.max_upload_bytes} bytes")
        if not self.max_audio_s > 0:
            raise ServeError(f"serve: the audio length limit must be positive, got {self.max_audio_s} s")
        if not self.upload_timeout_s > 0:
            raise ServeError(f"serve: the upload timeout must be positive, got {self.upload_timeout_s} s")
        if self.workers < 1 or self.max_queue < 0:
            raise ServeError(f"serve: --workers must be at least 1 (got {self.workers}) and --queue at least 0 "
                             f"(got {self.max_queue})")
        return self


def load_token(token_file: str | os.PathLike | None = None, environ=os.environ) -> str | None:
    """The bearer token: the first line of ``token_file``, else ``$VOXMETRIC_TOKEN``, else ``None``.

    Raises:
        ServeError: unreadable or empty file, or a token shorter than 16 characters.
    """
    if token_file is not None:
        path = os.fspath(token_file)
        try:
            with open(path, encoding="utf-8") as f:
                token = f.readline().strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise ServeError(f"{path}: cannot read the token file ({reason})") from None
        source = path
    else:
        token = (environ.get(TOKEN_ENV) or "").strip()
        if not token:
            return None
        source = f"${TOKEN_ENV}"
    if not token:
        raise ServeError(f"{source}: the token file is empty")
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ServeError(f"{source}: the token must be at least {MIN_TOKEN_CHARS} characters without spaces "
                         f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def token_file_warning(token_file: str | os.PathLike) -> str | None:
    """A warning when the token file can be read by other users (its group or everyone), else ``None``."""
    path = os.fspath(token_file)
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return None  # load_token reports an unreadable file
    if not mode & 0o044:
        return None
    return f"{path}: the token file can be read by other users (mode {mode:o}); restrict it with chmod 600 {path}"
