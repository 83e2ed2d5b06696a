"""``voxmetric serve``: the subcommand (registered by :func:`add_serve`) and the server loop."""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys

from ...checks import int_at_least
from ...errors import UsageError, VoxmetricError
from .settings import TOKEN_ENV, ServeError, ServeSettings, load_token, token_file_warning

_DESCRIPTION = f"""\
Serve a model over HTTP, with a browser page at / (record or choose recordings, verify,
identify). Endpoints: POST /v1/verify, /v1/embed, /v1/identify, /v1/enroll; GET
/v1/speakers, /v1/model, /healthz; DELETE /v1/speakers/NAME. Uploads are multipart form
fields: 'a' and 'b' (two recordings), 'audio' (one), 'name' (a speaker). Everything but
/, /healthz and /v1/model needs 'Authorization: Bearer TOKEN' (the token from
--token-file or ${TOKEN_ENV}); --open-verify opens verification of two uploads to
clients without a token. Binds 127.0.0.1 unless told otherwise."""

_EPILOG = """\
example:
  python -c 'import secrets; print(secrets.token_urlsafe(32))' > token.txt
  voxmetric serve sinctdnn-aam --db speakers.db --token-file token.txt --port 8000
  curl -H "Authorization: Bearer $(cat token.txt)" -F a=@one.wav -F b=@two.wav \\
       http://127.0.0.1:8000/v1/verify"""


def add_serve(subparsers, formatter_class=argparse.RawDescriptionHelpFormatter,
              epilog_tail: str = "") -> argparse.ArgumentParser:
    """Register ``voxmetric serve`` on the main parser's subparsers (the CLI passes its help
    formatter and the exit-status text: this layer does not import the CLI's)."""
    p = subparsers.add_parser("serve", help="serve verification, identification and enrolment over HTTP "
                                            "(and a browser page)",
                              description=_DESCRIPTION, epilog=f"{_EPILOG}\n\n{epilog_tail}".rstrip(),
                              formatter_class=formatter_class)
    p.add_argument("model", metavar="MODEL",
                   help="bundled model name (sinctdnn-aam, ecapa-aam), exported .safetensors file or checkpoint")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one, printed)")
    p.add_argument("--token-file", metavar="F", help=f"file whose first line is the bearer token "
                                                     f"(default: ${TOKEN_ENV})")
    p.add_argument("--db", metavar="SPEAKERS.db", help="speaker database for enrol / identify / verify by name "
                                                       "(created if missing; needs a token)")
    p.add_argument("--open-verify", action="store_true",
                   help="let clients without a token verify two uploads (nothing else)")
    p.add_argument("--workers", type=int_at_least(1), metavar="N",
                   help="inference threads (default: CPU cores, at most 4)")
    p.add_argument("--queue", type=int_at_least(0), default=64, metavar="N",
                   help="requests that may wait for a worker (or still be sending their upload) before 503 "
                        "(default 64)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB",
                   help="largest request body in MB (default 20)")
    p.add_argument("--max-audio-minutes", type=float, default=10.0, metavar="MIN",
                   help="longest recording accepted (default 10)")
    p.add_argument("--upload-timeout-s", type=float, default=60.0, metavar="S",
                   help="seconds a client may take to send its request body before 408 (default 60)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--no-vad", action="store_true", help="embed whole recordings (no speech detection)")
    p.add_argument("--calibration", metavar="CAL.json", help="calibration from 'voxmetric calibrate'")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log on stderr; info and debug include one access line per request (default info)")
    p.set_defaults(func=_cmd_serve, command_parser=p)
    return p


_POSITIVE_OPTIONS = {"max_upload_mb": "--max-upload-mb", "max_audio_minutes": "--max-audio-minutes",
                     "upload_timeout_s": "--upload-timeout-s"}


def _check_options(args) -> None:
    """Option values no server can run with: usage errors naming the option, before anything starts."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0-65535 (0: a free one), got {args.port}")
    for name, option in _POSITIVE_OPTIONS.items():
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"{option} must be a positive number, got {value:g}")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cmd_serve(args) -> int:
    _check_options(args)
    try:
        import uvicorn  # noqa: F401
        import starlette  # noqa: F401
        import python_multipart  # noqa: F401
    except ImportError as error:
        raise ServeError(f"serve needs the 'serve' extra ({error.name} is missing): "
                         f"pip install 'voxmetric[serve]'") from None
    cores = _cores()
    workers = args.workers if args.workers is not None else max(1, min(4, cores))
    settings = ServeSettings(token=load_token(args.token_file), db=args.db, open_verify=args.open_verify,
                             max_upload_bytes=int(args.max_upload_mb * 1e6),
                             max_audio_s=args.max_audio_minutes * 60.0, workers=workers,
                             max_queue=args.queue, upload_timeout_s=args.upload_timeout_s).check()
    if args.token_file is not None and (warning := token_file_warning(args.token_file)):
        print(f"voxmetric: warning: {warning}", file=sys.stderr)
    import torch

    # Each worker runs its own request: split the cores between them instead of oversubscribing.
    torch.set_num_threads(max(1, cores // workers))
    from ...inference.speaker_model import load_model
    from .app import create_app

    model = load_model(args.model, device=args.device, calibration=args.calibration, vad=not args.no_vad)
    app = create_app(model, settings, model_label=args.model)
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"voxmetric serve: {args.model} on http://{shown}:{port}/ ({workers} worker(s) x "
          f"{torch.get_num_threads()} thread(s); speaker database: {args.db or 'none'}; "
          f"verification without token: {'open' if args.open_verify else 'closed'})", flush=True)
    return _run(app, sock, args.log_level)


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        raise ServeError(f"serve: cannot listen on {host}:{port} ({error.strerror or error})") from None
    sock.set_inheritable(True)
    return sock


def _run(app, sock: socket.socket, log_level: str) -> int:
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=log_level in ("info", "debug"),
                            server_header=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m voxmetric.deploy.serve.cli MODEL ...`` (the same as ``voxmetric serve``)."""
    parser = argparse.ArgumentParser(prog="voxmetric")
    add_serve(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except UsageError as error:
        args.command_parser.print_usage(sys.stderr)
        print(f"{args.command_parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except VoxmetricError as error:
        print(f"voxmetric: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
