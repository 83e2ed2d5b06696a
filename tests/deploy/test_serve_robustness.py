"""``voxmetric serve`` under hostile or unlucky clients, with a stand-in model (no network, so
each test takes well under a second): length limits in samples, uploads beyond the capacity,
slow bodies, graceful shutdown, names, and what the service discloses."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tempfile
import threading
import types
import unicodedata
import uuid
from pathlib import Path

import numpy as np
import pytest

# starlette and httpx come with the test extra (pip install -e ".[test]"): a missing one is a failure.

import warnings  # noqa: E402

with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from voxmetric import cli  # noqa: E402
from voxmetric.deploy.serve import ServeSettings, create_app  # noqa: E402
from voxmetric.deploy.serve.settings import ServeError  # noqa: E402
from voxmetric.deploy.speakerdb import SpeakerDB  # noqa: E402

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeModel:
    """What the service uses of a SpeakerModel; ``embed_with_quality`` records each call and,
    with ``hold`` set, waits until ``release`` is set."""

    name = "fake"
    fingerprint = "fake:sha256:0123"
    embedding_dim = 2
    calibration = None
    info: dict = {}
    settings = types.SimpleNamespace(to_dict=dict)

    def __init__(self, hold: bool = False):
        self.calls: list[str] = []
        self.hold, self.started, self.release = hold, threading.Event(), threading.Event()

    def decision_threshold(self) -> float:
        return 0.5

    def embed_with_quality(self, path: str):
        self.calls.append(path)
        self.started.set()
        if self.hold:
            self.release.wait(10)
        return np.array([1.0, 0.0], dtype=np.float32), types.SimpleNamespace(warnings=[])


@pytest.fixture(autouse=True)
def uploads(tmp_path, monkeypatch) -> Path:
    """Uploads go to a folder of this test's own."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _audio(seconds: float, rate_hz: int, format: str = "FLAC") -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    noise = np.random.default_rng(0).uniform(-0.1, 0.1, int(seconds * rate_hz))
    sf.write(buffer, noise, rate_hz, format=format, subtype="PCM_16")
    return buffer.getvalue()


def _multipart(files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart body of ``{field: (filename, bytes)}`` and its content type."""
    boundary = uuid.uuid4().hex
    body = bytearray()
    for name, (filename, data) in files.items():
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


async def _post(app, path: str, body: bytes, content_type: str, stop_after: int | None = None):
    """POST ``body`` straight to the ASGI app, as uvicorn would; with ``stop_after``, the client
    sends that many bytes and then nothing more (its connection stays open).

    Returns:
        ``(status, JSON body, bytes of the body the app read)``.
    """
    pending = [body if stop_after is None else body[:stop_after]]
    read = 0

    async def receive():
        nonlocal read
        if pending:
            chunk = pending.pop()
            read += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": stop_after is not None}
        await asyncio.Event().wait()  # a client that stopped sending

    sent = []

    async def send(message):
        sent.append(message)

    headers = {**AUTH, "content-type": content_type}
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:])), read


def _finish(app) -> None:
    service = app.state.service
    service.executor.shutdown(wait=True)
    assert service.active == 0 and os.listdir(service.uploads) == []  # every upload deleted


# --- #1: the length limit counts samples at the upload's own rate ---------------------------


def test_uploads_over_the_limit_in_samples_are_refused_before_decoding():
    model = FakeModel()
    app = create_app(model, ServeSettings(token=TOKEN, max_audio_s=1.0))
    with TestClient(app, raise_server_exceptions=False) as client:
        # 0.8 s, under the 1 s limit, but 76800 samples at 96 kHz: more than 1 s at 48 kHz.
        high = client.post("/v1/embed", headers=AUTH, files={"audio": ("high.flac", _audio(0.8, 96_000))})
        assert high.status_code == 413, high.text
        assert high.json() == {"error": "upload 'audio' (high.flac): 76800 samples at 96000 Hz, over the limit of "
                                        "48000 (1 s at 48 kHz); send it at 48 kHz or less"}
        assert model.calls == []  # refused from the header: nothing decoded
        usual = client.post("/v1/embed", headers=AUTH, files={"audio": ("usual.flac", _audio(0.8, 48_000))})
        assert usual.status_code == 200, usual.text
        assert len(model.calls) == 1
        # A FLAC streamed from a pipe (total_samples 0: length unknown) is counted, up to the limit.
        streamed = bytearray(_audio(4.0, 16_000))
        streamed[21] &= 0xF0
        streamed[22:26] = bytes(4)
        unknown = client.post("/v1/embed", headers=AUTH, files={"audio": ("pipe.flac", bytes(streamed))})
        assert unknown.status_code == 413, unknown.text
        assert unknown.json() == {"error": "upload 'audio' (pipe.flac): more than 1 s of audio, over the limit of 1 s"}
        assert len(model.calls) == 1


# --- #2: capacity counted before the body is read; a body timeout --------------------------


def test_uploads_beyond_the_capacity_are_503_before_their_body_is_read():
    app = create_app(FakeModel(), ServeSettings(token=TOKEN, workers=1, max_queue=0))
    service = app.state.service
    body, content_type = _multipart({"audio": ("a.flac", _audio(0.5, 16_000))})

    async def scenario():
        slow = asyncio.create_task(_post(app, "/v1/embed", body, content_type, stop_after=100))
        for _ in range(1000):  # until the slow upload has started spooling
            if os.listdir(service.uploads):
                break
            await asyncio.sleep(0.001)
        second = await _post(app, "/v1/embed", body, content_type)
        spooled = os.listdir(service.uploads)
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        return second, spooled

    (status, reply, read), spooled = asyncio.run(scenario())
    assert (status, reply) == (503, {"error": "server busy: all workers and queue places are taken; try again"})
    assert read == 0 and len(spooled) == 1  # the second body was never read, nor spooled
    _finish(app)


def test_a_client_that_stops_sending_its_body_gets_408_and_its_upload_is_deleted():
    app = create_app(FakeModel(), ServeSettings(token=TOKEN, upload_timeout_s=0.2))
    body, content_type = _multipart({"audio": ("a.flac", _audio(0.5, 16_000))})
    status, reply, _ = asyncio.run(asyncio.wait_for(_post(app, "/v1/embed", body, content_type, stop_after=500), 10))
    assert (status, reply) == (408, {"error": "request body not received within 0.2 s; try again"})
    _finish(app)


def test_the_upload_timeout_is_an_option_with_a_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "--upload-timeout-s S" in capsys.readouterr().out
    with pytest.raises(ServeError, match="upload timeout must be positive"):
        ServeSettings(token=TOKEN, upload_timeout_s=0).check()


# --- #6: graceful shutdown ----------------------------------------------------------------


def test_a_request_cancelled_by_shutdown_gets_json_503():
    model = FakeModel(hold=True)
    app = create_app(model, ServeSettings(token=TOKEN))
    body, content_type = _multipart({"audio": ("a.flac", _audio(0.5, 16_000))})

    async def scenario():
        request = asyncio.create_task(_post(app, "/v1/embed", body, content_type))
        assert await asyncio.to_thread(model.started.wait, 10)
        request.cancel()  # what uvicorn does when the graceful shutdown times out
        try:
            return await request
        finally:
            model.release.set()

    status, reply, _ = asyncio.run(scenario())
    assert (status, reply) == (503, {"error": "server shutting down; try again"})
    _finish(app)


# --- #7: names ----------------------------------------------------------------------------


def test_delete_finds_a_speaker_by_the_name_it_was_enrolled_with(tmp_path):
    db = tmp_path / "speakers.db"
    composed = unicodedata.normalize("NFC", "Zoë")
    with SpeakerDB.open(db, FakeModel.fingerprint) as speakers:
        speakers.enroll("  carol  ", [[1.0, 0.0]], ["c.wav"])
        speakers.enroll(composed, [[1.0, 0.0]], ["z.wav"])
    app = create_app(FakeModel(), ServeSettings(token=TOKEN, db=str(db)))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.delete("/v1/speakers/%20%20carol%20%20", headers=AUTH).json() == {"removed": "carol"}
        decomposed = unicodedata.normalize("NFD", "Zoë")
        assert client.delete(f"/v1/speakers/{decomposed}", headers=AUTH).json() == {"removed": composed}
        assert client.get("/v1/speakers", headers=AUTH).json() == {"speakers": []}


# --- #9: disclosure, the token file, and the database at startup ----------------------------


def test_clients_see_the_model_files_name_not_its_path():
    app = create_app(FakeModel(), ServeSettings(token=TOKEN), model_label="/srv/models/ecapa-aam.safetensors")
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").json()["model"] == "ecapa-aam.safetensors"
        assert client.get("/v1/model").json()["name"] == "ecapa-aam.safetensors"


@pytest.fixture
def serve(monkeypatch, tmp_path, capsys):
    """``voxmetric serve ARGS`` up to the point where uvicorn would run, with the stand-in model;
    returns (exit status, stdout, stderr, the app or ``None``)."""
    import torch

    import voxmetric.deploy.serve.cli as serve_cli
    import voxmetric.inference.speaker_model as speaker_model

    monkeypatch.delenv("VOXMETRIC_TOKEN", raising=False)
    monkeypatch.setattr(speaker_model, "load_model", lambda *args, **kwargs: FakeModel())
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    apps = []

    def run(app, sock, log_level):
        sock.close()
        apps.append(app)
        return 0

    monkeypatch.setattr(serve_cli, "_run", run)

    def call(*args):
        status = cli.main(["serve", *args, "--port", "0"])
        out, err = capsys.readouterr()
        return status, out, err, apps.pop() if apps else None

    return call


def test_a_token_file_others_can_read_is_warned_about_once(serve, tmp_path):
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    status, _, err, _ = serve("/srv/m.safetensors", "--token-file", str(token_file))
    assert status == 0 and err == (f"voxmetric: warning: {token_file}: the token file can be read by other users "
                                   f"(mode 644); restrict it with chmod 600 {token_file}\n")
    token_file.chmod(0o600)
    status, _, err, _ = serve("/srv/m.safetensors", "--token-file", str(token_file))
    assert status == 0 and err == ""


def test_serve_with_a_database_it_cannot_create_prints_one_line(serve, tmp_path):
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    status, _, err, app = serve("fake", "--token-file", str(token_file), "--db", str(token_file / "s.db"))
    assert status == 1 and app is None
    assert err == (f"voxmetric: error: {token_file}/s.db: cannot open the speaker database ({token_file} is a file, "
                   f"not a folder)\n")
