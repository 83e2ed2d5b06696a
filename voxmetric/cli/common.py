"""What every command shares: exit statuses, help formatting, common options, warnings and
the ``--skip-errors`` ending."""

from __future__ import annotations

import argparse
import sys

from ..checks import int_at_least  # noqa: F401  (an argparse type the commands share)
from ..errors import UsageError



EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
"""Exit statuses: success, input error, usage error, partial success (``--skip-errors``), interrupted."""

EXIT_STATUS_HELP = ("exit status: 0 success, 1 error (one line on stderr, nothing half-written), 2 usage error, "
                    "3 partial (--skip-errors: some inputs failed; see stderr and OUT.errors.tsv), "
                    "130 / 143 interrupted by SIGINT / SIGTERM (train saves a checkpoint first)")

_MODEL_HELP = "bundled model name (sinctdnn-aam, ecapa-aam), exported .safetensors file or training checkpoint"

class _Formatter(argparse.HelpFormatter):
    """Wraps descriptions and epilogs to the help's width like the options, keeping indented
    lines (the examples) as written; appends each option's default to its help."""

    def _fill_text(self, text, width, indent):
        import textwrap

        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines):  # 'example:' and its command lines
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent,
                                                subsequent_indent=indent, break_on_hyphens=False))
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is argparse.SUPPRESS or not action.option_strings or "default" in text.lower():
            return text
        if isinstance(action, (argparse._StoreTrueAction,)):
            return f"{text} (default: off)"
        if action.default in (None, [], ""):
            return text
        return f"{text} (default: %(default)s)"

def _command(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=description, formatter_class=_Formatter,
                            epilog=f"example:\n  {example}\n\n{EXIT_STATUS_HELP}")
    parser.set_defaults(command_parser=parser)
    return parser

# --- shared options ----------------------------------------------------------------------

def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars and no quality warnings (errors are still printed)")

def _add_model(parser: argparse.ArgumentParser, calibration: bool = True, optional: bool = False) -> None:
    parser.add_argument("model", metavar="MODEL", nargs="?" if optional else None, help=_MODEL_HELP)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--no-vad", action="store_true",
                        help="embed whole recordings (default: trim non-speech first)")
    if calibration:
        parser.add_argument("--calibration", metavar="CAL.json",
                            help="calibration and threshold from 'voxmetric calibrate' (default: the model's)")

def _add_skip_errors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-errors", action="store_true",
                        help="go on past bad inputs: write the results of the good ones, list each failure on "
                             "stderr and in OUT.errors.tsv, exit with status 3")

def _add_jobs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int_at_least(0), default=1, metavar="N",
                        help="embed the files in N worker processes of one thread each (0: one per CPU core); "
                             "faster than threads on many files, each worker taking a few seconds to start; "
                             "CPU only")

def _jobs(args) -> int:
    """``--jobs``, refused with a GPU before the model is loaded."""
    if args.jobs != 1 and args.device != "cpu":
        raise UsageError(f"--jobs runs worker processes on the CPU; with --device {args.device} leave it at 1")
    return args.jobs

def _add_batch_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", metavar="FILE", help="write the batch results here (default: standard output)")
    parser.add_argument("--format", choices=["jsonl", "tsv"],
                        help="batch output: JSON Lines, or TSV with a header (default: tsv for *.tsv / *.txt "
                             "names, else jsonl)")

def _load(args):
    from ..inference.speaker_model import load_model

    return load_model(args.model, device=args.device, calibration=getattr(args, "calibration", None),
                      vad=not args.no_vad)

def _check_outputs(*paths: str | None) -> None:
    """Before any long work, refuse outputs that could not be written (:func:`check_writable
    <voxmetric.fileio.check_writable>`, which probes with a temporary file); ``None`` and ``-``
    (standard output) are skipped."""
    from ..fileio import check_writable

    for path in paths:
        if path not in (None, "-"):
            check_writable(path)

def _warner(args):
    """The per-file quality-warning printer (silent with -q)."""
    if args.quiet:
        return None
    return lambda warning: print(f"voxmetric: warning: {warning}", file=sys.stderr)

def _warn(args, warnings) -> None:
    printer = _warner(args)
    for warning in warnings if printer else ():
        printer(warning)

def _finish(failures, out: str | None) -> int:
    """Report ``--skip-errors`` failures (stderr, OUT.errors.tsv); the exit status."""
    from ..inference.batch import write_failures

    if out:
        sidecar = write_failures(out, failures)
    else:
        sidecar = None
    for failure in failures:
        print(f"voxmetric: failed: {failure.item}: {failure.reason}", file=sys.stderr)
    if not failures:
        return EXIT_OK
    where = f"; listed in {sidecar}" if sidecar else ""
    print(f"voxmetric: partial: {len(failures)} input(s) failed{where} (exit status {EXIT_PARTIAL})",
          file=sys.stderr)
    return EXIT_PARTIAL


# --- commands ----------------------------------------------------------------------------
