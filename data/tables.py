"""Line-numbered readers for the annotation files of public face datasets.

Every format error is a :class:`DatasetLayoutError` that names ``file:line``, so a bad row in a
200,000-line file can be found with an editor.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from core.cli import read_utf8, text_lines
from data.errors import DatasetLayoutError


def where(path, line: int | None = None) -> str:
    """``path:line`` (or just ``path``) for error messages."""
    return f"{path}:{line}" if line else str(path)


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else an error saying which annotation file is missing."""
    if not Path(path).is_file():
        raise DatasetLayoutError(f"{what} not found: {path}")
    return Path(path)


def read_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-blank lines (1-based numbers); UTF-8 only (an error names
    the line of the first other byte)."""
    return [(n, ln.strip()) for n, ln in text_lines(path, DatasetLayoutError) if ln.strip()]


def parse_int(token: str, path, line: int, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise DatasetLayoutError(f"{where(path, line)}: {what} must be an integer, got {token!r}") from None


def parse_float(token: str, path, line: int, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise DatasetLayoutError(f"{where(path, line)}: {what} must be a number, got {token!r}") from None


def read_csv_rows(path: Path, columns: tuple[str, ...], optional_header: bool = False):
    """Rows of a comma-separated file as ``(line number, {column: text})``.

    The first row must be the header naming ``columns`` (in any order, extra columns allowed; spaces
    around names ignored). With ``optional_header`` a file whose first row is data is read as having
    exactly ``columns`` in that order.
    """
    text = io.StringIO(read_utf8(path, DatasetLayoutError), newline="")
    rows = [(n, row) for n, row in enumerate(csv.reader(text, skipinitialspace=True), 1) if any(c.strip() for c in row)]
    if not rows:
        raise DatasetLayoutError(f"{path}: empty file")
    first = [c.strip() for c in rows[0][1]]
    if set(columns) <= set(first):
        index = {c: first.index(c) for c in columns}
        body = rows[1:]
    elif optional_header:
        index = {c: i for i, c in enumerate(columns)}
        body = rows
    else:
        missing = sorted(set(columns) - set(first))
        raise DatasetLayoutError(f"{where(path, rows[0][0])}: header lacks column(s) {missing}; "
                                 f"expected {list(columns)}")
    width = max(index.values()) + 1
    out = []
    for n, row in body:
        if len(row) < width:
            raise DatasetLayoutError(f"{where(path, n)}: {len(row)} fields, expected at least {width}")
        out.append((n, {c: row[i].strip() for c, i in index.items()}))
    return out
