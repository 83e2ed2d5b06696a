"""Command line: parsing only; every command calls a library function."""

import sys


def main(argv=None) -> int:
    print("voxmetric: under construction", file=sys.stderr)
    return 1
