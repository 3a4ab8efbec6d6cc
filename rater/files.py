"""Writing a file whole or not at all."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import FileError


@contextmanager
def replacing(target: Path, *, text: bool = False) -> Iterator[IO[Any]]:
    """A new file that takes ``target``'s place when the block ends without an error
    (written beside it under a name of its own, then renamed: readers see the old file
    or the whole new one); on an error it is removed and ``target`` left as it was."""
    target = Path(target)
    # Created as open() would (0666 less the umask), not private as mkstemp makes it.
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise FileError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with (os.fdopen(fd, "w", newline="", encoding="utf-8") if text
              else os.fdopen(fd, "wb")) as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
