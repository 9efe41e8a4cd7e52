"""Command-line error reporting shared by the scripts: bad input gives one line and exit code 2."""
from __future__ import annotations

import functools
import sys


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (a file, a key, a folder layout), not a bug."""
    from core.checkpoint import CheckpointError
    from core.config import ConfigError
    from data.folders import DatasetLayoutError

    return CheckpointError, ConfigError, DatasetLayoutError, FileNotFoundError


def clear_errors(main):
    """Wrap a script's ``main(argv)``: user errors print ``error: ...`` to stderr and return 2."""

    @functools.wraps(main)
    def wrapped(argv=None):
        try:
            return main(argv)
        except user_errors() as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return wrapped
