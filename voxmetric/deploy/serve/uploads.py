"""Multipart uploads streamed into a size-bounded temporary folder.

The request body is parsed while it arrives (python-multipart's streaming parser):
each file part goes straight to its own file under a fresh temporary folder, and the
parse stops with 413 as soon as the body passes the limit, so neither memory nor disk
ever holds more than the limit. Files are then identified by their first bytes (WAV,
FLAC, Ogg; anything else is 415) and renamed with the matching extension, so that
:mod:`voxmetric.audio` decodes them with exactly the CLI's checks. Error messages and
warnings name the upload (``upload 'a' (alice.wav)``), never the temporary path.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field

from ...errors import UnsupportedUpload, UploadError, UploadTooLarge

_FIELD_LIMIT = 4096  # bytes of a text field (name, top, replace)
_MAX_PARTS = 32
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers allowed on top of the upload limit

_FORMATS = {  # first bytes -> extension libsndfile reads it under
    b"RIFF": ".wav", b"RF64": ".wav", b"fLaC": ".flac", b"OggS": ".ogg",
}


@dataclass
class Upload:
    """One file part: ``field`` name, client ``filename``, where it lies, its ``label`` for messages."""

    field: str
    filename: str
    path: str
    size: int = 0

    @property
    def label(self) -> str:
        return f"upload '{self.field}' ({self.filename})" if self.filename else f"upload '{self.field}'"


@dataclass
class Form:
    """A parsed request: text ``fields`` and file ``uploads`` (by field name, in order) in ``folder``."""

    folder: str
    fields: dict[str, str] = field(default_factory=dict)
    uploads: dict[str, list[Upload]] = field(default_factory=dict)

    def files(self, name: str) -> list[Upload]:
        return self.uploads.get(name, [])

    def public(self, text: str) -> str:
        """``text`` with every temporary path replaced by its upload's label."""
        for upload in sorted((u for us in self.uploads.values() for u in us), key=lambda u: -len(u.path)):
            text = text.replace(upload.path, upload.label)
        return text.replace(self.folder, "upload")  # anything else under it

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _safe_filename(name: str) -> str:
    base = os.path.basename(name.replace("\\", "/")).strip()
    base = re.sub(r"[^\w.\- ]", "_", base)[:100].strip(". ")
    return base or "recording"


def uploads_root() -> str:
    """A temporary folder for this server process's uploads, ``voxmetric-serve-<pid>-*``; the
    folders of servers that died without cleaning up (SIGKILL) are removed first."""
    import glob

    for stale in glob.glob(os.path.join(tempfile.gettempdir(), "voxmetric-serve-*-*")):
        try:
            pid = int(os.path.basename(stale).split("-")[2])
            os.kill(pid, 0)
        except (ValueError, IndexError, PermissionError):
            continue  # not ours, or a live process of another user
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"voxmetric-serve-{os.getpid()}-")


async def receive_form(request, max_bytes: int, root: str | None = None) -> Form:
    """Parse ``request``'s multipart body into a fresh temporary folder under ``root`` (the caller
    cleans it up).

    Raises:
        UploadError: not multipart, malformed, too many parts, a text field too long (400);
            the body over ``max_bytes`` (413); a file that is not WAV, FLAC or Ogg (415).
    """
    from python_multipart import MultipartParser
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import parse_options_header

    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UploadError("send the recordings as multipart/form-data (e.g. curl -F a=@one.wav -F b=@two.wav)",
                          status=415 if content_type not in (b"multipart/form-data", b"") else 400)
    limit = max_bytes + _MULTIPART_OVERHEAD
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(f"request body of {int(declared)} bytes is over the upload limit of "
                             f"{_mb(max_bytes)}")
    form = Form(tempfile.mkdtemp(prefix="upload-", dir=root))
    state = {"headers": {}, "field": b"", "value": b"", "part": None, "out": None, "text": None, "parts": 0}

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        state["parts"] += 1
        if state["parts"] > _MAX_PARTS:
            raise UploadError(f"too many form fields (more than {_MAX_PARTS})")
        _, disposition = parse_options_header(state["headers"].get("content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise UploadError("a form part has no name (Content-Disposition: form-data; name=...)")
        if b"filename" in disposition:
            filename = disposition[b"filename"].decode("utf-8", "replace")
            index = sum(len(v) for v in form.uploads.values())
            folder = os.path.join(form.folder, f"{index}")
            os.mkdir(folder)
            upload = Upload(name, os.path.basename(filename.replace("\\", "/")), os.path.join(folder, "upload"))
            form.uploads.setdefault(name, []).append(upload)
            state["part"], state["out"], state["text"] = upload, open(upload.path, "wb"), None
        else:
            state["part"], state["out"], state["text"] = name, None, bytearray()

    def on_part_data(data, start, end):
        chunk = data[start:end]
        if state["out"] is not None:
            upload = state["part"]
            upload.size += len(chunk)
            if upload.size > max_bytes:
                raise UploadTooLarge(f"{upload.label}: over the upload limit of {_mb(max_bytes)}")
            state["out"].write(chunk)
        else:
            state["text"] += chunk
            if len(state["text"]) > _FIELD_LIMIT:
                raise UploadError(f"form field '{state['part']}' is longer than {_FIELD_LIMIT} bytes")

    def on_part_end():
        if state["out"] is not None:
            state["out"].close()
        else:
            try:
                form.fields[state["part"]] = bytes(state["text"]).decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(f"form field '{state['part']}' is not UTF-8 text") from None
        state["headers"], state["part"], state["out"], state["text"] = {}, None, None, None

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise UploadTooLarge(f"request body is over the upload limit of {_mb(max_bytes)}")
            parser.write(chunk)
        parser.finalize()
        for uploads in form.uploads.values():
            for upload in uploads:
                _identify_format(upload)
    except MultipartParseError as error:
        form.cleanup()
        raise UploadError(f"malformed multipart body ({str(error).splitlines()[0]})") from None
    except BaseException:
        if state["out"] is not None:
            state["out"].close()
        form.cleanup()
        raise
    return form


def _identify_format(upload: Upload) -> None:
    """Rename the upload with its format's extension, or refuse it (empty: 400, not audio: 415)."""
    if upload.size == 0:
        raise UploadError(f"{upload.label}: empty file (0 bytes)")
    with open(upload.path, "rb") as f:
        head = f.read(12)
    extension = _FORMATS.get(head[:4])
    if extension == ".wav" and head[8:12] != b"WAVE":
        extension = None
    if extension is None:
        raise UnsupportedUpload(f"{upload.label}: unsupported audio format; send WAV, FLAC or Ogg")
    stem = os.path.splitext(_safe_filename(upload.filename))[0] or "recording"
    path = os.path.join(os.path.dirname(upload.path), stem + extension)
    os.rename(upload.path, path)
    upload.path = path


def _mb(size: int) -> str:
    return f"{size / 1e6:g} MB"


# --- the form's fields --------------------------------------------------------------------

_MAX_NAME_CHARS = 200
_MAX_TOP = 100


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.3g} minutes" if seconds >= 60 else f"{seconds:.3g} s"


def _expect(form: Form, expected: dict[str, int | None], what: str) -> Form:
    """``form``, checked to have exactly the expected upload fields (``None``: one or more)."""
    for name in form.uploads:
        if name not in expected:
            allowed = " and ".join(f"'{n}'" for n in expected)
            raise UploadError(f"{what}: unexpected upload field '{name}' (send {allowed})")
    for name, count in expected.items():
        got = len(form.files(name))
        if got == 0:
            raise UploadError(f"{what}: missing upload '{name}' (a recording as a multipart file field)")
        if count is not None and got != count:
            raise UploadError(f"{what}: {got} uploads in field '{name}', expected {count}")
    return form


def _name(form: Form) -> str:
    name = form.fields.get("name", "").strip()
    if not name:
        raise UploadError("missing form field 'name' (the speaker's name)")
    if len(name) > _MAX_NAME_CHARS or any(not c.isprintable() for c in name):
        raise UploadError(f"form field 'name': at most {_MAX_NAME_CHARS} printable characters")
    return name


def _top(text: str) -> int:
    try:
        top = int(str(text).strip())
    except ValueError:
        raise UploadError(f"form field 'top': expected a whole number, got {text!r}") from None
    if not 1 <= top <= _MAX_TOP:
        raise UploadError(f"form field 'top': must be between 1 and {_MAX_TOP}, got {top}")
    return top
