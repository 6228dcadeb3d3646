"""Writing a file so that a reader (a resumed run, a report, a parallel sweep job reading a shared cache) sees the old
file or the new one, never half of one, even after a crash of the machine."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Optional


def write_atomically(path: Path, write: Callable[[str], None], keep_previous: Optional[Path] = None) -> None:
    """`write(tmp)` fills a temporary file beside `path`, which then replaces `path` in one rename, once its bytes
    are on the disk (fsync): a rename can otherwise reach the disk before the data it names. With `keep_previous`,
    the file it replaces is kept there. A failed write (a full disk) names `path` in its error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        sync(tmp)
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # an error inside write() names no file
        raise
    sync(path.parent)  # the renames themselves


def sync(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
