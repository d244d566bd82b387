"""OmegaConf resolvers used by ``conf/``, and the checks of a command line made before Hydra composes it.

Importing this module registers the resolvers (idempotently).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from livedead import CLASS_NAMES

_SEQUENCE = itertools.count()


def run_dir(resume: str | None = None, kind: str = "runs") -> str:
    """A new run folder under ``outputs/``, or the folder of the run being resumed.

    The name holds the start time, the process id, a per-process sequence number and a random
    tag: runs started in the same second never share a folder, whether they come from one
    process, from several on one machine, or from jobs on the nodes of a cluster.
    """
    if resume:
        return str(Path(resume).resolve())
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    return f"outputs/{kind}/{stamp}_{os.getpid()}-{next(_SEQUENCE)}{secrets.token_hex(2)}"


DATA_CODE = (
    "livedead.plates.synthetic",
    "livedead.plates.platefile",
    "livedead.plates.sources",
    "livedead.nuclei.size",
    "livedead.nuclei.labels",
    "livedead.data.tiling",
    "livedead.data.tilefile",
    "livedead.data.workers",
    "livedead.data.preparation",
)
"""The modules that make the synthetic default data from its spec: a change to any of them remakes it.
Found by module name, so the key follows a module that moves."""


_SUBDIRS: dict[str, str] = {}


def hydra_subdir(output_dir: str) -> str:
    """Where Hydra records a job's config in its folder: ``.hydra``, or, for a job run again in a folder
    that already holds a record (a resumed run, a rerun sweep job), ``.hydra/resume-<time>-<pid>``.

    Earlier records are never overwritten, so the config a run started with is always there to
    resume from. Memoised per folder: Hydra resolves the key more than once in a job (and
    :func:`new_session` forgets the memo when a command starts).
    """
    if output_dir not in _SUBDIRS:
        first = not (Path(output_dir) / ".hydra" / "config.yaml").exists()
        _SUBDIRS[output_dir] = ".hydra" if first else f".hydra/resume-{_now_us()}-{os.getpid()}"
    return _SUBDIRS[output_dir]


def _now_us() -> str:
    """The time to the microsecond, so that the records of one folder sort in the order they were made."""
    ns = time.time_ns()
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(ns // 10**9)) + f".{ns // 1000 % 10**6:06d}"


def new_session() -> None:
    """Forget which record each folder's job writes: a command run again in the same process is a new session."""
    _SUBDIRS.clear()


def spec_hash(spec: Any) -> str:
    """A short, stable hash of a config node and of the code that makes data from it: the data's cache key."""
    value = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec
    digest = hashlib.sha1(json.dumps(value, sort_keys=True).encode())
    for name in DATA_CODE:
        spec_ = importlib.util.find_spec(name)
        if spec_ is None or spec_.origin is None:
            raise LookupError(f"livedead.config.resolvers.DATA_CODE: module {name!r} not found")
        digest.update(Path(spec_.origin).read_bytes())
    return digest.hexdigest()[:10]


SWEPT_KEYS_ENV = "LIVEDEAD_SWEPT_KEYS"


def swept_keys(overrides: list[str], sweeper_params: dict[str, Any] | None) -> list[str]:
    """The config keys a multirun varies: comma lists and sweep functions, and the sweeper's params."""
    keys = []
    for override in overrides:
        key, _, value = override.partition("=")
        if value.startswith(("[", "{", "'", '"')):
            continue
        if "," in value or re.match(r"^(choice|range|interval|glob|tag)\(", value):
            keys.append(key.lstrip("+~"))
    return list(dict.fromkeys([*keys, *(sweeper_params or {})]))


def job_name(overrides: list[str]) -> str:
    """A sweep job's name: its values of the swept keys, e.g. ``optimizer=sgd,scheduler=kicks``
    (all its overrides when the multirun sweeps nothing)."""
    keys = [k for k in os.environ.get(SWEPT_KEYS_ENV, "").split(",") if k]
    chosen = [o for o in overrides if o.partition("=")[0].lstrip("+~") in keys] if keys else list(overrides)
    return ",".join(chosen).replace("/", "_")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("livedead.run_dir"):
        OmegaConf.register_new_resolver("livedead.run_dir", run_dir, use_cache=True)
    if not OmegaConf.has_resolver("livedead.job_name"):
        OmegaConf.register_new_resolver("livedead.job_name", lambda o: job_name(list(o)))
    if not OmegaConf.has_resolver("livedead.spec_hash"):
        OmegaConf.register_new_resolver("livedead.spec_hash", spec_hash)
    if not OmegaConf.has_resolver("livedead.hydra_subdir"):
        OmegaConf.register_new_resolver("livedead.hydra_subdir", hydra_subdir)
    if not OmegaConf.has_resolver("livedead.class_names"):  # conf/ names the classes through this, never twice
        OmegaConf.register_new_resolver("livedead.class_names", lambda: list(CLASS_NAMES))


register_resolvers()


def unknown_group_choice(argv: list[str], conf_dir: Path) -> str | None:
    """The one-line error for a ``group=option`` override naming no ``conf/<group>/<option>.yaml``.

    Hydra reports these too, over several lines; this catches the plain cases (single values and
    comma-separated sweeps) before composing, and names the valid options on the same line.
    """
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key.startswith(("+", "~", "hydra")) or "(" in value:
            continue
        group = conf_dir / key
        if not group.is_dir():
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for choice in value.split(","):
            if choice not in (*options, "null"):
                return f"config group '{key}': expected one of {', '.join(options)}, found '{choice}'"
    return None


def unwritable_output(argv: list[str], default: str = "outputs") -> str | None:
    """The one-line error for an output folder that cannot be created or written (before Hydra tries)."""
    targets = [a.partition("=")[2] for a in argv if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    for target in targets or [default]:
        path = Path(target).absolute()
        while not path.exists():
            path = path.parent
        if not path.is_dir() or not os.access(path, os.W_OK):
            found = "a file" if not path.is_dir() else "no write permission"
            return f"output folder {target}: expected a writable folder, found {found} at {path}"
    return None
