"""Command line: parsing only; every command calls a library function.

One ``add_<command>(subparsers)`` function per subcommand declares its arguments, help and
example; the ``_run_<command>`` beside it calls the library and prints.

Exit status (:data:`EXIT_OK` ...): 0 success; 1 an error caused by input (a file, a config
field), printed on one line as ``voxmetric: error: ...``, nothing half-written; 2 a usage
error (the command's usage is shown); 3 partial success with ``--skip-errors``: the results
of the good inputs were written, each failure is listed on stderr and in ``OUT.errors.tsv``;
130 interrupted.
"""

from __future__ import annotations

import argparse
import warnings
import sys

from ..errors import Interrupted, UsageError, VoxmetricError
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_STATUS_HELP, EXIT_USAGE  # noqa: F401
from .common import _Formatter
from .deployment import add_calibrate, add_enroll, add_identify, add_serve, add_speakers, add_verify
from .evaluation import add_embed, add_eval, add_export, add_score
from .experiments import add_compare, add_demo, add_synth, add_train


COMMANDS = [add_synth, add_train, add_embed, add_score, add_eval, add_compare, add_verify, add_export, add_demo,
            add_calibrate, add_enroll, add_identify, add_speakers, add_serve]
"""The subcommands, in help order; other packages add theirs with :func:`register`."""

_EXTRA: list = []

def register(add_command) -> None:
    """Add a subcommand: ``add_command(subparsers)`` declares it (with ``set_defaults(func=...)``)."""
    if add_command not in _EXTRA:
        _EXTRA.append(add_command)

def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="voxmetric",
        description="End-to-end speaker verification with metric learning.",
        epilog=f"Run 'voxmetric COMMAND --help' for a command's options and an example.\n\n{EXIT_STATUS_HELP}",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"voxmetric {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_command in COMMANDS + _EXTRA:
        add_command(sub)
    return parser

def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"voxmetric: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    command_parser = getattr(args, "command_parser", parser)
    before = argv[:argv.index(args.command)]
    if before:
        # Only --help and --version come before the command; the command's own options go after it.
        parser.error(f"unrecognized arguments before the command '{args.command}': {' '.join(before)} "
                     f"(a command's options go after its name: 'voxmetric {args.command} -q ...')")
    if extra and command_parser is not parser:
        # Files after options ('embed MODEL --root DIR a.wav b.wav'): parse the command's own arguments
        # intermixed; what is still unknown is reported with the command's usage, not the top-level one.
        own = command_parser.parse_intermixed_args(argv[argv.index(args.command) + 1:])
        args = argparse.Namespace(**{**vars(args), **vars(own)})
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with warnings.catch_warnings():  # a library warning is one line, not a source path and code
            warnings.showwarning = _one_line_warning
            return args.func(args)
    except UsageError as error:
        command_parser.print_usage(sys.stderr)
        print(f"{command_parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except VoxmetricError as error:
        print(f"voxmetric: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as stop:
        print(f"voxmetric: interrupted{f': {stop}' if str(stop) else ''}", file=sys.stderr)
        return 128 + stop.signal if isinstance(stop, Interrupted) else EXIT_INTERRUPTED


