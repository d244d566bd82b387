"""OmegaConf resolvers used by ``conf/``; importing this module registers them (idempotently)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def run_dir(resume: str | None = None, kind: str = "runs") -> str:
    """A new run folder under ``outputs/``, or the folder of the run being resumed.

    The name holds the start time, the process id and a random tag, so runs started in the same
    second (by one user, or by many jobs of a cluster) never share a folder.
    """
    if resume:
        return str(Path(resume).resolve())
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    return f"outputs/{kind}/{stamp}_{os.getpid()}-{secrets.token_hex(2)}"


def spec_hash(spec: Any) -> str:
    """A short, stable hash of a config node: the cache key of data generated from it."""
    value = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("livedead.run_dir"):
        OmegaConf.register_new_resolver("livedead.run_dir", run_dir, use_cache=True)
    if not OmegaConf.has_resolver("livedead.spec_hash"):
        OmegaConf.register_new_resolver("livedead.spec_hash", spec_hash)


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
