"""Reading ``torch.save`` / pickle files with one error line a user can act on.

Every weight file and checkpoint of the project is read through :func:`torch_load`. A file that torch cannot
read (cut short by a failed download or copy, an empty file, random bytes, a truncated pickle) is one error
naming the file, its size, what it should hold and what to do; torch's own text (zip reader internals,
pickle opcodes) is left out. A text file (a config given as a checkpoint) is named as one.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

CORRUPT = "truncated or corrupt (not a complete torch / pickle file)"
DOWNLOAD_AGAIN = "download it again"


def text_start(path, size: int = 256) -> str | None:
    """The first line of ``path`` if the file starts with text (UTF-8, no control characters but tab and line
    ends; not a protocol-0 pickle, which starts with a MARK "("), else None: a config or a list given where a
    torch file belongs."""
    with open(path, "rb") as f:
        head = f.read(size)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not a multi-byte character cut by ``size``
            return None
        text = head[:e.start].decode("utf-8")
    if not text.strip() or text.startswith("(") or any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        return None
    line = text.strip().splitlines()[0]
    return line if len(line) <= 40 else line[:37] + "..."


def unreadable_file_error(path, what: str, advice: str = DOWNLOAD_AGAIN, error: type[Exception] = ValueError):
    """The error for a file that should hold ``what`` but cannot be read as a whole: a text file is named as
    one, anything else is truncated or corrupt (its size and ``advice`` in the message)."""
    path = Path(path)
    start = text_start(path)
    if start is not None:
        return error(f"{path} should hold {what} but is a text file (it starts with {start!r}), "
                     "not a torch / pickle file")
    return error(f"{path} ({path.stat().st_size:,} bytes) should hold {what} but is {CORRUPT}: {advice}")


def stored_global(e: BaseException) -> str | None:
    """The class a ``weights_only`` load refused (``GLOBAL module.name`` in torch's message), else None."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    return found.group(1) if found else None


def torch_load(path, what: str, *, weights_only: bool, advice: str = DOWNLOAD_AGAIN,
               error: type[Exception] = ValueError, objects_hint: str = "", map_location="cpu"):
    """``torch.load(path)`` on the CPU; ``error`` (one line, naming ``path`` and ``what``) for a truncated or
    corrupt file. With ``weights_only``, a complete file that pickles other Python objects is also ``error``,
    naming the class (``objects_hint`` appended). A file that cannot be opened raises the OSError naming it;
    ``MemoryError`` passes. Without ``weights_only`` the file is fully unpickled: trusted files only."""
    path = Path(path)
    with open(path, "rb"):  # a missing or unreadable file is the OSError naming it, not "corrupt"
        pass
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except MemoryError:
        raise
    except Exception as e:  # truncated zip, truncated pickle, random bytes, an empty file, ...
        name = stored_global(e) if weights_only else None
        if name:
            raise error(f"{path} is not {what}: it stores Python objects ({name}), not only tensors"
                        f"{objects_hint}") from None
        if not weights_only and isinstance(e, (ImportError, AttributeError)):  # pickles a class not found here
            raise error(f"{path} should hold {what} but pickles objects that cannot be rebuilt here "
                        f"({type(e).__name__}: {e})") from None
        raise unreadable_file_error(path, what, advice, error) from None
