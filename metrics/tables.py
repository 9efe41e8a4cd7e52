"""Metric tables: Markdown for reading, JSON for machines; both written atomically."""
from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def _plain(v):
    """Tensors / numpy values -> Python scalars or lists."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return v.item() if v.ndim == 0 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _cell(v, floatfmt: str) -> str:
    v = _plain(v)
    if v is None:
        return ""
    if isinstance(v, bool):
        s = str(v)
    elif isinstance(v, numbers.Integral):
        s = str(int(v))
    elif isinstance(v, numbers.Real):
        s = format(float(v), floatfmt)
    else:
        s = str(v)
    return s.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None, floatfmt: str = ".4f") -> str:
    """Render rows as a GitHub-flavoured Markdown table (no trailing newline).

    ``columns`` defaults to the union of the rows' keys in first-seen order. Floats use
    ``floatfmt``; ints and bools print as-is; missing keys and ``None`` give empty cells; ``|``
    in text is escaped. Columns are space-padded to equal width.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    columns = [str(c) for c in columns]
    body = [[_cell(r.get(c), floatfmt) for c in columns] for r in rows]
    header = [c.replace("|", "\\|") for c in columns]
    widths = [max([3, len(header[i])] + [len(b[i]) for b in body]) for i in range(len(columns))]

    def line(cells):
        return "| " + " | ".join(s.ljust(wd) for s, wd in zip(cells, widths)) + " |"

    return "\n".join([line(header), line(["-" * wd for wd in widths])] + [line(b) for b in body])


def _json_safe(v):
    v = _plain(v)
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    return str(v)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_metrics(out_dir: str | os.PathLike, name: str, rows: Sequence[dict]) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.md`` (``markdown_table(rows)``) and ``<out_dir>/<name>.json``.

    The JSON is a list of row dicts with tensors/numpy values converted to Python types and
    non-finite floats (NaN, inf) written as ``null`` so the file stays strict JSON. Both files are
    written atomically; ``out_dir`` is created. Returns ``(md_path, json_path)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / f"{name}.md", out / f"{name}.json"
    _atomic_write_text(md_path, markdown_table(rows) + "\n")
    _atomic_write_text(json_path, json.dumps(_json_safe(list(rows)), indent=2, allow_nan=False) + "\n")
    return md_path, json_path
