"""User-facing errors: bad input is reported as one line, never as a traceback wall."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from omegaconf.errors import OmegaConfBaseException

F = TypeVar("F", bound=Callable[..., Any])


class LivedeadError(Exception):
    """Bad input or configuration. The message names the file or key, what was expected and found."""


def one_line(err: LivedeadError) -> str:
    """The message of an error, also when a DataLoader worker re-raised it with its traceback inside."""
    text = str(err).strip()
    if "Traceback" in text:
        text = text.splitlines()[-1].removeprefix(f"{LivedeadError.__module__}.{LivedeadError.__name__}: ")
    return text


def cli_errors(prog: str) -> Callable[[F], F]:
    """Turn :class:`LivedeadError` (and missing/invalid config values) into one line and exit 2.

    Wraps a Hydra task function, so it sits *under* ``@hydra.main``: Hydra's own errors
    (unknown config group options) keep Hydra's message, which already lists the valid options.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except LivedeadError as err:
                print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
            except OmegaConfBaseException as err:
                key = getattr(err, "full_key", None) or "?"
                reason = str(err).splitlines()[0]
                print(f"{prog}: error: config key '{key}': {reason}", file=sys.stderr)
            sys.exit(2)

        return wrapper  # type: ignore[return-value]

    return decorate


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
