"""Running the package's Hydra apps so that bad input is one line and exit code 2, wherever it is found.

Two places can find it: Hydra, while it composes the config (an unknown group option, a value of
the wrong type for a structured config, a malformed override), and the task function (a missing
file, a value out of range). :func:`run_app` handles the first, :func:`cli_errors` the second.
Ctrl-C, anywhere in a command, is one line saying what was kept, and exit code 130.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from livedead.config import resolvers  # registers the resolvers that conf/ uses
from livedead.errors import Interrupted, LivedeadError, one_line
from livedead.files import forget_written, interrupted_summary, is_disk_full

F = TypeVar("F", bound=Callable[..., Any])


def describe_config_error(err: BaseException) -> str:
    """One line for an OmegaConf or Hydra error: the key, then the first line of the reason.

    Hydra wraps the OmegaConf error of a bad override in its own; the innermost names the key. An
    override Hydra cannot parse is named, with how to quote a path that holds ``=``, spaces or brackets.
    """
    inner: BaseException | None = err
    while inner is not None and not isinstance(inner, OmegaConfBaseException):
        inner = inner.__cause__ or inner.__context__
    if isinstance(inner, OmegaConfBaseException):
        key = getattr(inner, "full_key", None) or "?"
        reason = str(inner).strip().splitlines()[0]
        return f"config key '{key}': {reason}"
    if isinstance(err, MissingConfigException) and err.options:
        group = (err.missing_cfg_file or "?").rpartition("/")[0]
        found = (err.missing_cfg_file or "?").rpartition("/")[2]
        return f"config group '{group}': expected one of {', '.join(sorted(err.options))}, found '{found}'"
    if isinstance(err, OverrideParseException):
        key, _, value = err.override.partition("=")
        reason = " ".join(err.message.split()).split(" See https://")[0]
        return (
            f"cannot parse the override {err.override!r} ({reason}): quote a value that holds '=', spaces, "
            f"brackets or commas, for Hydra and the shell: \"{key}='{value}'\""
        )
    return " ".join(str(err).split())


def cli_errors(prog: str) -> Callable[[F], F]:
    """Turn :class:`LivedeadError` (and missing/invalid config values, and a file the system refused
    to read or write) into one line and exit 2.

    Wraps a Hydra task function, so it sits *under* ``@hydra.main``.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except LivedeadError as err:
                print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
            except OmegaConfBaseException as err:
                print(f"{prog}: error: {describe_config_error(err)}", file=sys.stderr)
            except OSError as err:
                if err.filename is None:  # not about a file: a bug to see in full
                    raise
                print(f"{prog}: error: {err.filename2 or err.filename}: {err.strerror or err}", file=sys.stderr)
            sys.exit(2)

        return wrapper  # type: ignore[return-value]

    return decorate


def _quiet_when_disk_full(args: threading.ExceptHookArgs) -> None:
    """A background writer (TensorBoard's) that finds the disk full: the command reports it in one line."""
    if not is_disk_full(args.exc_value):
        threading.__excepthook__(args)


def run_app(main: Callable[[], Any], prog: str) -> None:
    """Call a ``@hydra.main`` function; a config that Hydra cannot compose is one line and exit 2.

    Hydra prints composition errors over several lines and exits 1 unless ``HYDRA_FULL_ERROR=1``
    lets them through; this sets it for the call and reports them itself. A user who set
    ``HYDRA_FULL_ERROR=1`` gets Hydra's full traceback, as Hydra documents. Ctrl-C is one line
    and exit 130 (a file being written is removed, never left under its final name).
    """
    resolvers.new_session()
    threading.excepthook = _quiet_when_disk_full
    forget_written()
    try:
        _run_reporting_config_errors(main, prog)
    except KeyboardInterrupt as err:
        kept = str(err) if isinstance(err, Interrupted) else interrupted_summary()
        print(f"{prog}: interrupted; {kept}", file=sys.stderr)
        sys.exit(130)


def _run_reporting_config_errors(main: Callable[[], Any], prog: str) -> None:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        print(f"{prog}: error: {describe_config_error(err)}", file=sys.stderr)
        sys.exit(2)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
