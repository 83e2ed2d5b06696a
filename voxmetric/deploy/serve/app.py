"""The ASGI application of ``voxmetric serve`` (Starlette).

Every endpoint answers JSON; every error is ``{"error": "<one line>"}`` with the
message the CLI would print (upload names instead of temporary paths), never a
traceback. Inference runs in a bounded thread pool (``settings.workers`` threads,
at most ``settings.max_queue`` requests waiting, beyond that 503), so the event loop
keeps accepting and rejecting requests while the model works; a request takes its place
before its body is read, which must arrive within ``settings.upload_timeout_s`` (else 408).
Each request's uploads live in their own temporary folder, deleted when its work is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from ...errors import ApiError, VoxmetricError
from .settings import ServeSettings
from .uploads import (Form, UploadError, UploadTooLarge, _duration, _expect, _name, _top, receive_form,
                      uploads_root)

log = logging.getLogger("voxmetric.serve")

MAX_UPLOAD_RATE_HZ = 48_000
"""Decoding holds a whole upload at its own sample rate, so the samples an upload may have are
``max_audio_s`` at this rate: a small compressed file at 384 kHz cannot take GBs of memory."""


def _status_of(error: VoxmetricError) -> int:
    from ..speakerdb import ModelMismatchError, SpeakerDBError, UnknownSpeakerError

    if isinstance(error, UploadError):
        return error.status
    if isinstance(error, UnknownSpeakerError):
        return 404
    if isinstance(error, ModelMismatchError):
        return 409
    if isinstance(error, SpeakerDBError):
        return 503 if "busy" in str(error) else 409
    return 400  # bad audio, no speech, too short, ... : the request's fault


class Service:
    """The model, the settings, the worker pool and the request handlers."""

    def __init__(self, model, settings: ServeSettings, model_label: str | None = None):
        self.model = model
        self.settings = settings.check()
        self.model_label = os.path.basename(model_label or model.name)  # a served file's name, never its path
        self.fingerprint = model.fingerprint
        self.executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="voxmetric-infer")
        self._lock = threading.Lock()
        self.active = 0  # requests running or waiting in the pool
        if settings.db is not None:  # a foreign or another model's database: refuse to start
            from ..speakerdb import SpeakerDB

            with SpeakerDB.open(settings.db, self.fingerprint):
                pass
        self.uploads = uploads_root()

    # --- plumbing ---------------------------------------------------------------

    def authorise(self, request, optional: bool = False) -> bool:
        """Check the bearer token: ``True`` when a valid one was sent; without one, ``False``
        when ``optional`` else 401; a wrong one is always 403."""
        header = request.headers.get("authorization")
        if header is None:
            if optional:
                return False
            raise ApiError(401, "this endpoint needs a bearer token (Authorization: Bearer TOKEN)",
                           {"WWW-Authenticate": "Bearer"})
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "malformed Authorization header; send 'Authorization: Bearer TOKEN'",
                           {"WWW-Authenticate": "Bearer"})
        expected = self.settings.token
        # Constant time, and over digests so that not even the token's length shows in the timing.
        if expected is None or not hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(),
                                                       hashlib.sha256(expected.encode()).digest()):
            raise ApiError(403, "invalid token")
        return True

    def need_db(self) -> str:
        if self.settings.db is None:
            raise ApiError(404, "this server has no speaker database (start it with --db FILE)")
        return self.settings.db

    async def run(self, job, request=None, parse=None):
        """``job(*args)`` in the worker pool; with ``request``, ``args = parse(form)`` of its body's
        form first (without, ``job()``).

        The request takes its place (``workers + max_queue``) before its body is read, so beyond
        that it is answered 503 at once, not after its upload is spooled to disk. The place is
        freed and the form's folder deleted when the job is done (by the worker itself, so a client
        that disconnects cannot pull files from under it), or at once when the request fails before.
        """
        with self._lock:
            busy = self.active >= self.settings.workers + self.settings.max_queue
            if not busy:
                self.active += 1
        if busy:
            raise ApiError(503, "server busy: all workers and queue places are taken; try again",
                           {"Retry-After": "1"})
        form, args = None, ()

        def done():
            if form is not None:
                form.cleanup()
            with self._lock:
                self.active -= 1

        def work():
            try:
                return job(*args)
            except VoxmetricError as error:  # name uploads, not temporary paths; the database by its file name
                raise ApiError(_status_of(error), self.public(form, str(error).splitlines()[0])) from None
            finally:
                done()

        try:
            if request is not None:
                form = await self.receive(request)
                args = parse(form)
            future = self.executor.submit(work)
        except BaseException:
            done()
            raise
        return await asyncio.wrap_future(future)

    async def receive(self, request) -> Form:
        """The request's multipart form (:func:`receive_form`) if its body arrives within
        ``upload_timeout_s``; else 408, and what it sent is deleted (a slow client cannot hold
        its place and disk space for long)."""
        timeout_s = self.settings.upload_timeout_s
        try:
            return await asyncio.wait_for(receive_form(request, self.settings.max_upload_bytes, self.uploads),
                                          timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(408, f"request body not received within {_duration(timeout_s)}; try again",
                           {"Connection": "close"}) from None

    def public(self, form: Form | None, text: str) -> str:
        if form is not None:
            text = form.public(text)
        if self.settings.db is not None:
            text = text.replace(self.settings.db, os.path.basename(self.settings.db))
        return text

    def check_length(self, form: Form) -> None:
        """Refuse uploads over the length limit, from their headers, before anything is decoded."""
        from ... import audio

        limit_s = self.settings.max_audio_s
        max_frames = int(limit_s * MAX_UPLOAD_RATE_HZ)
        for uploads in form.uploads.values():
            for upload in uploads:
                header = audio.info(upload.path, stop_after_frames=max_frames)
                if header.duration_s > limit_s:
                    amount = f"more than {_duration(limit_s)}" if header.counted_to_limit else \
                        _duration(header.duration_s)
                    raise UploadTooLarge(f"{upload.label}: {amount} of audio, over the limit of {_duration(limit_s)}")
                if header.frames > max_frames:
                    raise UploadTooLarge(f"{upload.label}: {header.frames} samples at {header.sample_rate_hz} Hz, "
                                         f"over the limit of {max_frames} ({_duration(limit_s)} at "
                                         f"{MAX_UPLOAD_RATE_HZ // 1000} kHz); send it at 48 kHz or less")

    # --- jobs (in the worker pool) ------------------------------------------------

    def _verify(self, form: Form, name: str | None) -> dict:
        from ..enroll import verify_enrolled

        self.check_length(form)
        if name is None:
            a, b = form.files("a")[0], form.files("b")[0]
            result = self.model.verify(a.path, b.path)
            enrol, test = a.filename or "a", b.filename or "b"
        else:
            upload = form.files("audio")[0]
            result = verify_enrolled(self.model, self.settings.db, name, upload.path)
            enrol, test = f"{name} ({os.path.basename(self.settings.db)})", upload.filename or "audio"
        out = {"enrol": enrol, "test": test, "model": self.model_label, **result.to_dict()}
        out["warnings"] = [form.public(w) for w in out["warnings"]]
        return out

    def _embed(self, form: Form) -> dict:
        self.check_length(form)
        upload = form.files("audio")[0]
        embedding, report = self.model.embed_with_quality(upload.path)
        return {"audio": upload.filename or "audio", "model": self.model_label, "fingerprint": self.fingerprint,
                "dim": int(embedding.shape[0]), "embedding": [float(x) for x in embedding],
                "warnings": [form.public(w) for w in report.warnings]}

    def _identify(self, form: Form, top: int) -> dict:
        from ..enroll import identify

        self.check_length(form)
        upload = form.files("audio")[0]
        result = identify(self.model, self.settings.db, upload.path, top=top).to_dict()
        result["audio"] = upload.filename or "audio"
        del result["path"]
        best = result["candidates"][0] if result["candidates"] else None
        # Open set: the best candidate only when it passes the threshold; otherwise nobody enrolled.
        result["identified"] = best["name"] if best is not None and best["accepted"] else None
        result["warnings"] = [form.public(w) for w in result["warnings"]]
        return result

    def _enroll(self, form: Form, name: str, replace: bool) -> dict:
        from ..enroll import enroll

        self.check_length(form)
        paths = [u.path for u in form.files("audio")]
        speaker, warnings = enroll(self.model, self.settings.db, name, paths, replace=replace)
        return {"name": speaker.name, "count": speaker.count, "sources": speaker.sources,
                "created": speaker.created, "updated": speaker.updated,
                "warnings": [form.public(w) for w in warnings]}

    def _speakers(self) -> dict:
        from ..speakerdb import SpeakerDB

        with SpeakerDB.open(self.settings.db, self.fingerprint) as db:
            speakers = []
            for name in db.names():
                try:
                    speaker = db.get(name)
                except VoxmetricError:  # removed meanwhile
                    continue
                speakers.append({"name": name, "count": speaker.count, "created": speaker.created,
                                 "updated": speaker.updated})
        return {"speakers": speakers}

    def _remove(self, name: str) -> dict:
        from ..speakerdb import SpeakerDB

        with SpeakerDB.open(self.settings.db, self.fingerprint) as db:
            return {"removed": db.remove(name)}

    # --- endpoints ----------------------------------------------------------------

    async def verify(self, request):
        authorised = self.authorise(request, optional=self.settings.open_verify)

        def parse(form: Form) -> tuple:
            if form.files("a") or form.files("b"):
                _expect(form, {"a": 1, "b": 1}, "verify")
                return form, None
            if form.files("audio") or "name" in form.fields:
                _expect(form, {"audio": 1}, "verify")
                name = _name(form)
                if not authorised:
                    self.authorise(request)  # verification against the database always needs the token
                self.need_db()
                return form, name
            raise UploadError("verify: send two recordings as form fields 'a' and 'b', or one as 'audio' "
                              "with an enrolled speaker's 'name'")

        return await self.run(self._verify, request, parse)

    async def embed(self, request):
        self.authorise(request)
        return await self.run(self._embed, request, lambda form: (_expect(form, {"audio": 1}, "embed"),))

    async def identify(self, request):
        self.authorise(request)
        self.need_db()

        def parse(form: Form) -> tuple:
            _expect(form, {"audio": 1}, "identify")
            return form, _top(form.fields.get("top", request.query_params.get("top", "3")))

        return await self.run(self._identify, request, parse)

    async def enroll(self, request):
        self.authorise(request)
        self.need_db()

        def parse(form: Form) -> tuple:
            _expect(form, {"audio": None}, "enroll")
            replace = form.fields.get("replace", "false").strip().lower() in ("1", "true", "yes", "on")
            return form, _name(form), replace

        return await self.run(self._enroll, request, parse)

    async def speakers(self, request):
        self.authorise(request)
        self.need_db()
        return await self.run(self._speakers)

    async def remove(self, request):
        self.authorise(request)
        self.need_db()
        return await self.run(functools.partial(self._remove, request.path_params["name"]))

    async def model_info(self, request):
        model = self.model
        try:
            threshold = model.decision_threshold()
        except VoxmetricError:
            threshold = None
        return {"name": self.model_label, "fingerprint": self.fingerprint, "embedding_dim": model.embedding_dim,
                "threshold": threshold,
                "calibration": None if model.calibration is None else model.calibration.to_dict(),
                "frontend": model.settings.to_dict(), "sample_rate_hz": 16000,
                "description": model.info.get("description", ""),
                "limits": {"max_upload_bytes": self.settings.max_upload_bytes,
                           "max_audio_s": self.settings.max_audio_s},
                "open_verify": self.settings.open_verify, "speaker_db": self.settings.db is not None}

    async def health(self, request):
        return {"status": "ok", "model": self.model_label, "workers": self.settings.workers, "active": self.active}


def create_app(model, settings: ServeSettings, model_label: str | None = None):
    """The Starlette application serving ``model`` (a :class:`~voxmetric.pretrained.SpeakerModel`).

    Raises:
        ServeError: settings that would expose the speaker database without a token.
        SpeakerDBError: ``settings.db`` is not a voxmetric speaker database of this model.
    """
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    service = Service(model, settings, model_label)

    def endpoint(handler):
        async def wrapped(request):
            try:
                result = await handler(request)
            except ApiError as error:
                return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)
            except VoxmetricError as error:
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                return JSONResponse({"error": message}, status_code=_status_of(error))
            except asyncio.CancelledError:  # uvicorn's graceful shutdown ran out of time for this request
                return JSONResponse({"error": "server shutting down; try again"}, status_code=503)
            except Exception:  # noqa: BLE001 - logged here, never sent to the client
                log.exception("internal error in %s %s", request.method, request.url.path)
                return JSONResponse({"error": "internal server error (see the server log)"}, status_code=500)
            return JSONResponse(result)
        return wrapped

    page = resources.files("voxmetric.deploy.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    async def index(request):
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "Content-Security-Policy":
                                           "default-src 'self'; script-src 'unsafe-inline'; "
                                           "style-src 'unsafe-inline'; media-src 'self' blob:"})

    async def http_error(request, error: HTTPException):
        return JSONResponse({"error": error.detail or "error"}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    async def server_error(request, error: Exception):
        log.error("unhandled error in %s %s: %r", request.method, request.url.path, error)
        return JSONResponse({"error": "internal server error (see the server log)"}, status_code=500)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/healthz", endpoint(service.health), methods=["GET"]),
        Route("/v1/model", endpoint(service.model_info), methods=["GET"]),
        Route("/v1/verify", endpoint(service.verify), methods=["POST"]),
        Route("/v1/embed", endpoint(service.embed), methods=["POST"]),
        Route("/v1/identify", endpoint(service.identify), methods=["POST"]),
        Route("/v1/enroll", endpoint(service.enroll), methods=["POST"]),
        Route("/v1/speakers", endpoint(service.speakers), methods=["GET"]),
        Route("/v1/speakers/{name:path}", endpoint(service.remove), methods=["DELETE"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            # uvicorn has let running requests finish (or timed out) before this point
            service.executor.shutdown(wait=False, cancel_futures=True)
            shutil.rmtree(service.uploads, ignore_errors=True)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error},
                    lifespan=lifespan)
    app.state.service = service
    return app


__all__ = ["ApiError", "Service", "create_app"]
