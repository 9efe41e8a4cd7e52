"""Command-line error reporting shared by every entry point: bad input ends in one ``error:`` line.

``clear_errors`` wraps a script's ``main(argv)``. Exceptions that mean bad input or an environment
problem (:func:`user_errors`: a file, a key, a folder layout, a permission, a corrupt image) print
``error: <one line>`` to stderr and return the exit status (the exception's ``exit_code``, else 2).
Programming errors (TypeError, AttributeError, IndexError, ...) keep their traceback.
"""
from __future__ import annotations

import functools
import io
import re
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


class RunError(RuntimeError):
    """A run that cannot go on for a reason the message names (no traceback); exit status ``exit_code``."""

    exit_code = 1


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or a failing environment, not a bug. ValueError is the project's
    "bad value" error (ConfigError, DatasetLayoutError and UnicodeDecodeError derive from it); OSError
    covers missing or unreadable files, unwritable folders, full disks and PIL's unreadable images."""
    from core.checkpoint import CheckpointError

    return ValueError, OSError, CheckpointError, RunError


_WORKER = re.compile(r"^(?:[A-Za-z_][\w.]*)(?:Error|Exception): (.*)$")


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line, naming the file where the exception knows it."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        text = f"{e.filename}: {e.strerror}" + (f" (-> {e.filename2})" if e.filename2 else "")
    elif isinstance(e, UnicodeDecodeError):  # readers should name the file (read_utf8); a last resort
        text = f"a file is not UTF-8 text ({e})"
    else:
        text = str(e) or type(e).__name__
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) > 1 and "Original Traceback" in text:  # re-raised from a DataLoader worker
        m = _WORKER.match(lines[-1])
        lines = [m.group(1) if m else lines[-1]]
    return " ".join(lines)


def report(e: BaseException, code: int | None = None) -> int:
    """Print ``error: <one line>`` to stderr; returns ``code`` (default: ``e.exit_code`` or 2)."""
    print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
    return code if code is not None else getattr(e, "exit_code", EXIT_BAD_INPUT)


def clear_errors(main):
    """Wrap a script's ``main(argv)``: user errors print one ``error:`` line and return non-zero."""

    @functools.wraps(main)
    def wrapped(argv=None):
        try:
            return main(argv)
        except user_errors() as e:
            return report(e)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130

    return wrapped


def read_utf8(path, error: type[Exception] = ValueError) -> str:
    """The text of ``path`` (UTF-8, a byte-order mark dropped); a file in another encoding raises ``error``
    naming ``path:line`` of the first byte that is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}; e.g. latin-1); "
                    "convert it, e.g. iconv -f latin1 -t utf-8") from None


def text_lines(path, error: type[Exception] = ValueError) -> list[tuple[int, str]]:
    """``(line number, line without its end)`` of a UTF-8 text file; lines end at \\n, \\r\\n or \\r."""
    return [(n, ln.rstrip("\r\n")) for n, ln in enumerate(io.StringIO(read_utf8(path, error), newline=None), 1)]
