"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from voxmetric.cli import main


def exit_status(args) -> int:
    """``voxmetric.cli.main(args)``'s exit status, also when argparse exits on a bad option value (2)."""
    try:
        return main(args)
    except SystemExit as stop:
        return stop.code
