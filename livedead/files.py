"""Files written whole or not at all: atomic renames, stale temporaries of killed runs, full disks.

Standard library only, so that every layer can write through it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from livedead.errors import LivedeadError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""Write errors that mean no room: a full device, a quota, a file-size limit."""


def no_room(err: BaseException) -> str:
    """The reason of a disk-full error, in the operating system's words."""
    while err is not None:
        if getattr(err, "errno", None) in DISK_FULL:
            return os.strerror(err.errno)
        for code in DISK_FULL:
            if f"errno = {code}," in str(err) or os.strerror(code) in str(err):
                return os.strerror(code)
        err = err.__cause__ or err.__context__
    return "no space left"


def is_disk_full(err: BaseException | None) -> bool:
    """Whether an error, or one it was raised from, says there was no room to write (HDF5 raises these
    as RuntimeError with the errno only in its message; torch.save's writer, as another RuntimeError)."""
    while err is not None:
        text = str(err)
        if getattr(err, "errno", None) in DISK_FULL or any(
            f"errno = {code}," in text or os.strerror(code) in text for code in DISK_FULL
        ):
            return True
        err = err.__cause__ or err.__context__
    return False


@contextmanager
def atomic_path(path: str | os.PathLike[str], keep: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it into place only if the block succeeds.

    A run that is killed or fails leaves at most a temporary file, never a file under the
    final name that looks complete (``name.tmp-<pid>.ext``): the file is flushed to the disk
    (fsync) before the rename, and the folder after it, so even a power cut leaves the old file
    or the new one. A write that finds no room raises :class:`LivedeadError` naming the path,
    and the previous file is kept. With ``keep=False`` the file is a scratch file, always removed.
    """
    final = Path(path)
    tmp = final.with_name(f"{final.stem}.tmp-{os.getpid()}{final.suffix}")  # the suffix tells tools the format
    try:
        yield tmp
        if keep:
            _fsync(tmp)
            os.replace(tmp, final)
            _fsync(final.parent)
    except (OSError, RuntimeError) as err:
        if is_disk_full(err):
            raise LivedeadError(
                f"{final}: no room to write it ({no_room(err)}); any previous {final.name} is kept"
            ) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(path: str | os.PathLike[str]) -> None:
    """Remove what runs that were killed while writing left: :func:`atomic_path`'s temporary siblings of
    the file ``path`` (or every one in the folder ``path``) whose process is gone; a run still writing
    one is left alone."""
    target = Path(path)
    folder, pattern = (target, "*.tmp-*") if target.is_dir() else (target.parent, f"{target.stem}.tmp-*{target.suffix}")
    for tmp in folder.glob(pattern):
        pid = tmp.name.split(".tmp-", 1)[1].split(".")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            tmp.unlink(missing_ok=True)
