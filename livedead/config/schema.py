r"""Typed configs: a value of the wrong type is one line naming the key, before any data is touched.

Two sources of types, so that no default or type is written twice:

* The commands' settings are dataclasses of the package (``PlateSpec``, ``PrepareConfig``,
  ``PredictConfig``, :class:`TrainSettings`); each command :func:`store`\ s its own in Hydra's
  ConfigStore as the schema that its YAML file extends, with the dataclass's own defaults. Hydra then
  rejects ``tile=abc`` while composing (reported by :func:`livedead.config.app.run_app`).
* Every node with a ``_target_`` (the trainer, the datamodule, the network, the optimizer, the
  callbacks...) is checked against the type hints of the target's own signature by
  :func:`check_targets`, so Lightning's ``Trainer`` keys are checked before it is built.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from hydra.core.config_store import ConfigStore
from hydra.utils import get_object
from omegaconf import MISSING, DictConfig, OmegaConf

from livedead.errors import LivedeadError

T = TypeVar("T")


@dataclasses.dataclass
class TrainSettings:
    """The top-level keys of ``conf/train.yaml``; the groups (data, model, trainer...) are typed by their targets."""

    seed: int = 0
    """``seed_everything(seed)``; 0 is a valid seed."""
    seeds: int = 1
    """How many seeds (0, 1, ...) the ``experiment=compare_*`` sweeps run each setting with."""
    optimized_metric: str = "val/pr_auc/macro"
    """Returned to sweepers, ranks ``summary.csv``, the HParams ``hp_metric``."""
    validate_best: bool = True
    """Validate the best checkpoint after fitting."""
    ckpt_path: str | None = None
    """Start from this checkpoint's full state (weights, optimizer, scheduler)."""
    resume: str | None = None
    """A run folder: continue it from its ``last.ckpt``, into the same folders."""
    resume_sweep: str | None = None
    """A multirun folder: rerun the sweep there; finished jobs are kept, cut-off ones resumed."""
    data: Any = None
    model: Any = None
    trainer: Any = None
    logger: Any = None
    callbacks: Any = None
    paths: Any = None


def schema_of(cls: type, **extra: tuple[Any, Any]) -> type:
    """A mutable dataclass with the fields, types and defaults of ``cls``, plus ``extra`` (name: (type, default);
    a dataclass as the default stands for its own defaults).

    Hydra needs resolved (not string) annotations and a mutable class to merge overrides into;
    this copies a package dataclass without restating any default.
    """
    hints = typing.get_type_hints(cls)
    spec = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            spec.append((f.name, hints[f.name], dataclasses.field(default=f.default)))
        elif f.default_factory is not dataclasses.MISSING:
            spec.append((f.name, hints[f.name], dataclasses.field(default_factory=f.default_factory)))
        else:
            spec.append((f.name, hints[f.name], dataclasses.field(default=MISSING)))
    for name, (tp, default) in extra.items():  # a dataclass given as the default: a fresh one each time
        field = (
            dataclasses.field(default_factory=default)
            if isinstance(default, type)
            else dataclasses.field(default=default)
        )
        spec.append((name, tp, field))
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", spec)


def store(name: str, cls: type, **extra: tuple[Any, Any]) -> None:
    """Store a command's schema in Hydra's ConfigStore under ``name`` (its YAML file names it in its defaults).

    ``cls`` is used as it is if it is a mutable dataclass without ``extra``, else copied by :func:`schema_of`.
    """
    frozen = cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    node = schema_of(cls, **extra) if extra or frozen else cls
    ConfigStore.instance().store(name=name, node=node)


def settings_of(cfg: DictConfig, cls: type[T]) -> tuple[Any, T]:
    """A command's composed config as its typed object, and the package dataclass ``cls`` of its settings.

    The command's schema is ``cls`` plus the command's own keys (input, output...: :func:`store`), so
    the settings are the fields of ``cls`` taken from it; nested nodes come out as their dataclasses.
    """
    command = OmegaConf.to_object(cfg)
    return command, cls(**{f.name: getattr(command, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


# -- the types of _target_ nodes ----------------------------------------------------------------
_SPECIAL = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def check_targets(cfg: DictConfig, prefix: str = "") -> None:
    """Check every ``_target_`` node of a composed config against its target's signature (one line if not)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    _walk(container, prefix)


def _walk(node: Any, key: str) -> None:
    if isinstance(node, Mapping):
        if "_target_" in node:
            _check_node(node, key)
        for k, v in node.items():
            if k not in _SPECIAL:
                _walk(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk(v, f"{key}[{i}]")


def _check_node(node: Mapping[str, Any], key: str) -> None:
    try:
        target = get_object(node["_target_"])
    except Exception:
        raise LivedeadError(
            f"config key '{key}._target_': expected an importable class or function, found {node['_target_']!r}"
        ) from None
    try:
        fn = target.__init__ if inspect.isclass(target) else target
        hints = typing.get_type_hints(fn)
        params = inspect.signature(target).parameters
    except (NameError, TypeError, ValueError):
        return  # annotations that cannot be resolved at run time: Hydra and the target check the values
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for name, value in node.items():
        if name in _SPECIAL or (isinstance(value, Mapping) and "_target_" in value):
            continue
        full = f"{key}.{name}" if key else name
        if name not in params:
            if takes_any:
                continue
            raise LivedeadError(
                f"config key '{full}': expected one of the arguments of {node['_target_']} "
                f"({', '.join(p for p in params if p != 'self')}), found '{name}'"
            )
        if name in hints and _conforms(value, hints[name]) is False:
            raise LivedeadError(f"config key '{full}': expected {_type_name(hints[name])}, found {value!r}")


def _conforms(value: Any, tp: Any) -> bool | None:
    """Whether a plain config value fits a type hint; None where the hint cannot be judged.

    >>> _conforms(3, int | None), _conforms(True, int), _conforms(2, float), _conforms([1, "a"], list[int])
    (True, False, True, False)
    """
    if tp is Any or tp is inspect.Parameter.empty or (isinstance(value, Mapping) and "_target_" in value):
        return True  # a node with a _target_ becomes an object, checked against its own signature
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None):
        return value is None
    if origin is typing.Union or origin is types.UnionType:
        results = [_conforms(value, a) for a in args]
        return True if any(r is True for r in results) else (None if None in results else False)
    if origin is typing.Literal:
        return value in args
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp in (os.PathLike,) or origin is os.PathLike:
        return isinstance(value, str)
    container = origin or tp
    if inspect.isclass(container) and issubclass(container, Mapping):
        return isinstance(value, Mapping)
    if inspect.isclass(container) and issubclass(container, Sequence) and container is not str:
        if not isinstance(value, list):
            return False
        inner = args[0] if args and (container is not tuple or (len(args) == 2 and args[1] is Ellipsis)) else None
        if inner is None:
            return True
        results = [_conforms(v, inner) for v in value]
        return False not in results
    if inspect.isclass(tp):
        return isinstance(value, tp)  # a config value is a plain type: it is an instance or it is not
    return None


def _type_name(tp: Any) -> str:
    """A type hint as the one-line errors write it.

    >>> _type_name(int | None), _type_name(typing.Literal["error", "skip"])
    ('int or None', "one of 'error', 'skip'")
    """
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
