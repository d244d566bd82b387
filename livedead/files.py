"""Files written whole or not at all: atomic renames, stale temporaries of killed runs, full disks,
outputs that would destroy an input or cannot be written, folders one run at a time, and Ctrl-C.

Standard library only, so that every layer can write through it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
def atomic_path(path: str | os.PathLike[str], keep: bool = True, record: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it into place only if the block succeeds.

    A run that is killed or fails leaves at most a temporary file, never a file under the
    final name that looks complete (``name.tmp-<pid>.ext``): the file is flushed to the disk
    (fsync) before the rename, and the folder after it, so even a power cut leaves the old file
    or the new one. A write that finds no room raises :class:`LivedeadError` naming the path,
    and the previous file is kept. With ``keep=False`` the file is a scratch file, always removed.
    With ``record=False`` the file is kept but not one that :func:`interrupted_summary` names: it goes
    into a temporary folder that the command removes itself.
    """
    final = Path(path)
    tmp = final.with_name(f"{final.stem}.tmp-{os.getpid()}{final.suffix}")  # the suffix tells tools the format
    try:
        yield tmp
        if keep:
            _fsync(tmp)
            os.replace(tmp, final)
            _fsync(final.parent)
            if record:
                _written.files.append(final)
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


def check_output(
    output: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    key: str = "output",
    folder: bool = False,
) -> Path:
    """Refuse, before any work is done, an output that would destroy an input or that cannot be written.

    The output may not be one of ``inputs`` (through a symlink or a hard link too), nor lie inside
    an input folder; an output folder (``folder=True``) may not hold an input (an export replaces
    its whole folder); an output file may not be an existing folder, an output folder not an
    existing file; and the folder it goes into must be creatable and
    writable (a parent that is a file, a read-only or pseudo file system). Each is one line naming
    ``key`` and the paths, instead of a traceback after the work, or a lost input. The folders
    above the output are created; the output itself is not. Returns ``output`` as a path.
    """
    out = Path(output)
    real = out.resolve()
    for given in inputs:
        source = Path(given)
        if real == source.resolve() or _same_file(out, source):
            raise LivedeadError(f"config key '{key}': {out} is the input {source}; writing it would destroy the input")
        if source.is_dir() and real.is_relative_to(source.resolve()):
            raise LivedeadError(
                f"config key '{key}': {out} lies inside the input folder {source}; choose a path outside it"
            )
        if folder and source.resolve().is_relative_to(real):
            raise LivedeadError(
                f"config key '{key}': the input {source} lies inside the output folder {out}; "
                "writing the folder could destroy it: choose a folder that holds no input"
            )
    if folder and out.exists() and not out.is_dir():
        raise LivedeadError(f"config key '{key}': expected a folder to write into, found the file {out}")
    if not folder and out.is_dir():
        raise LivedeadError(f"config key '{key}': expected a file to write, found the folder {out}")
    where = out if folder and out.is_dir() else out.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=where).close()  # a file of no name where the system allows: nothing to leave
    except OSError as err:
        raise LivedeadError(f"config key '{key}': cannot write {out}: {_why_unwritable(where, err)}") from None
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _why_unwritable(where: Path, err: OSError) -> str:
    for folder in (where, *where.parents):
        if folder.exists():
            if not folder.is_dir():
                return f"{folder} is a file, not a folder"
            break
    return f"{err.strerror or err} ({err.filename or where})"


_LOCKS: dict[tuple[int, int], tuple[int, int]] = {}
"""(device, inode) of each folder this process has locked -> (its descriptor, how many holders)."""

UNLOCKABLE = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF)
"""``flock`` errors of file systems that do not lock (some NFS and FUSE mounts): the run goes on unlocked."""


def _drop_locks_in_child() -> None:
    """A forked child (a DataLoader worker) closes its copies of the lock descriptors, so that it cannot keep
    the folder locked once the run is killed; the lock stays with the parent's own descriptor."""
    for fd, _ in _LOCKS.values():
        os.close(fd)
    _LOCKS.clear()


os.register_at_fork(after_in_child=_drop_locks_in_child)


@contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str = "run folder") -> Iterator[None]:
    """Hold an advisory lock on an existing folder for the block: two runs never write into one folder.

    The lock is ``flock`` on the folder itself, so nothing is written into it, and the kernel
    releases it when the process ends however it ends (``kill -9`` included): a lock is never
    stale. A second process finds it held and gets one line naming the folder and the holder's pid,
    before it writes anything. Within one process the lock may be taken again (the command and its
    task both hold it), and it is released when the outermost holder leaves. Forked children (DataLoader
    workers) do not inherit it. A file system that refuses ``flock`` gets one warning line and the run goes
    on unlocked; NFS and Lustre may lock per node only, so two runs on two nodes are not kept apart there.
    """
    path = Path(folder)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    key = (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
    if key in _LOCKS:
        os.close(fd)
        held, count = _LOCKS[key]
        _LOCKS[key] = (held, count + 1)
    else:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _lock_holder(*key)
            by = f"another process (pid {holder})" if holder else "another process"
            raise LivedeadError(
                f"{what} {path} is in use by {by}: wait until it ends, or choose another folder"
            ) from None
        except OSError as err:
            if err.errno not in UNLOCKABLE:
                os.close(fd)
                raise
            print(f"livedead: warning: cannot lock {what} {path} ({err.strerror}): running unlocked", file=sys.stderr)
        _LOCKS[key] = (fd, 1)
    try:
        yield
    finally:
        held, count = _LOCKS.pop(key)
        if count > 1:
            _LOCKS[key] = (held, count - 1)
        else:
            os.close(held)  # closing the last descriptor releases the lock


def _lock_holder(device: int, inode: int) -> int | None:
    """The pid that holds the flock lock of a file, from Linux's ``/proc/locks`` (None elsewhere)."""
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == wanted:
            return int(fields[4])
    return None


@dataclass
class _Written:
    """The files :func:`atomic_path` completed since the command started: what an interrupted command kept."""

    files: list[Path] = field(default_factory=list)


_written = _Written()


def forget_written() -> None:
    """A command starts: it has written nothing yet."""
    _written.files = []


def interrupted_summary() -> str:
    """What a command that was interrupted (Ctrl-C) kept, in a few words: files are whole or absent."""
    written = _written.files
    if not written:
        return "nothing written"
    folders = ", ".join(sorted({str(p.parent) for p in written}))
    return f"kept {len(written)} complete file{'s' if len(written) > 1 else ''} in {folders}; none half-written"
