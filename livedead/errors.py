"""User-facing errors: bad input is reported as one line, never as a traceback wall.

Standard library only, so that every layer, inference included, can raise them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LivedeadError(Exception):
    """Bad input or configuration. The message names the file or key, what was expected and found."""


def one_line(err: BaseException) -> str:
    """The message of an error, also when a DataLoader worker re-raised it with its traceback inside."""
    text = str(err).strip()
    if "Traceback" in text:
        text = text.splitlines()[-1].removeprefix(f"{LivedeadError.__module__}.{LivedeadError.__name__}: ")
    return text


@contextmanager
def atomic_path(path: str | os.PathLike[str], keep: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it into place only if the block succeeds.

    A run that is killed or fails leaves at most a temporary file, never a file under the
    final name that looks complete (``name.tmp-<pid>.ext``). With ``keep=False`` the file is a
    scratch file, always removed.
    """
    final = Path(path)
    tmp = final.with_name(f"{final.stem}.tmp-{os.getpid()}{final.suffix}")  # the suffix tells tools the format
    try:
        yield tmp
        if keep:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
