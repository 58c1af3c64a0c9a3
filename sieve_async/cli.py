"""Command line: ``sieve-async export | demo | fake-server``."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sieve-async`` command."""
    raise SystemExit("not yet")
