"""Command line: ``python -m cli --help``."""
