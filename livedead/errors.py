"""User-facing errors: bad input is reported as one line, never as a traceback wall.

Standard library only, so that every layer, inference included, can raise them. Writing files
safely (atomic renames, stale temporaries, full disks) is :mod:`livedead.files`.
"""

from __future__ import annotations


class LivedeadError(Exception):
    """Bad input or configuration. The message names the file or key, what was expected and found."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, caught where the command knows what it kept: the message says so (``kept ...; continue with ...``)."""


def one_line(err: BaseException) -> str:
    """The message of an error, also when a DataLoader worker re-raised it with its traceback inside."""
    text = str(err).strip()
    if "Traceback" in text:
        text = text.splitlines()[-1].removeprefix(f"{LivedeadError.__module__}.{LivedeadError.__name__}: ")
    return text
