"""The package's shape: dependencies run one way, inference stays light, and an installed package works anywhere."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from tests.helpers import ROOT

PACKAGE = ROOT / "livedead"
SHARED = {"__init__", "errors", "files", "allocator"}
"""Top-level modules that every folder may use (standard library only)."""
COMMANDS = {p.stem for p in PACKAGE.glob("*.py")} - SHARED
"""The rest of the top level of the package is its command line: one module per verb."""

# What each folder may import of the package (besides livedead itself and the SHARED modules).
ALLOWED = {
    "plates": {"plates"},
    "nuclei": {"nuclei", "plates"},
    "data": {"data", "plates", "nuclei"},
    "model": {"model", "viz"},
    "inference": {"inference", "plates", "nuclei", "data", "model", "viz"},
    "viz": {"viz"},
    "assays": {"assays", "plates", "nuclei", "viz"},
    "config": {"config", "plates", "nuclei", "data", "model", "inference", "viz"},
    "napari": {"napari", "inference", "plates", "nuclei", "data", "viz"},
}
# Modules of those folders that a folder may not import even so: inference takes the network and
# the checkpoint of the model, never the Lightning module or the datamodule.
FORBIDDEN = {"inference": {"livedead.model.module", "livedead.model.callbacks", "livedead.data.datamodule"}}
HEAVY = ("lightning", "hydra", "torchmetrics", "matplotlib", "omegaconf")
GUI = ("napari", "qtpy", "PySide6", "PyQt5", "PyQt6", "magicgui", "superqt", "vispy")
"""The viewer's stack, an extra (``livedead[napari]``): only the plugin's folder imports it, nothing imports that."""
NO_TORCH = ("plates", "nuclei")
"""Folders of image work alone: numpy, scipy, scikit-image, h5py and tifffile, no torch."""


def imports_of(path: Path) -> set[str]:
    """Every module a source file imports (absolute names), at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def package_modules() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports (``from livedead import X``: ``livedead``)."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")
    }
    out = {}
    for module, path in modules.items():
        names = set()
        for name in imports_of(path):
            while name.startswith("livedead.") and name not in modules:
                name = name.rpartition(".")[0]  # an attribute of a module, not a module
            names.add(name)
        out[module] = names
    return out


def test_dependencies_run_one_way():
    problems = []
    for module, imported in package_modules().items():
        parts = module.split(".")
        own = {i for i in imported if i.startswith("livedead.")}
        for name in own:
            target = name.split(".")
            if len(target) >= 2 and target[1] in COMMANDS and len(target) == 2:
                problems.append(f"{module} imports the command {name}")
        if len(parts) < 3 or parts[1] != "napari":
            gui = {i for i in imported if i.split(".")[0] in GUI}
            problems += [f"{module} imports {g} (only livedead.napari may)" for g in sorted(gui)]
            problems += [f"{module} imports the plugin {n}" for n in sorted(own) if n.startswith("livedead.napari")]
        if len(parts) < 3 or parts[1] not in ALLOWED:
            continue
        folder = parts[1]
        for name in own:
            target = name.split(".")[1]
            if target not in (*SHARED, *ALLOWED[folder]) and target not in COMMANDS and target != name:
                problems.append(f"{module} ({folder}) imports {name}")
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN.get(folder, ())):
                problems.append(f"{module} ({folder}) imports {name}")
        if folder in NO_TORCH:
            heavy = {i for i in imported if i.split(".")[0] in ("torch", *HEAVY)}
            problems += [f"{module} ({folder}) imports {h}" for h in sorted(heavy)]
        if folder == "assays":  # the assay works on saved counts and maps: no network
            problems += [f"{module} (assays) imports {i}" for i in sorted(imported) if i.split(".")[0] == "torch"]
        if folder in ("plates", "nuclei", "data", "inference", "viz", "assays", "napari"):
            heavy = {i for i in imported if i.split(".")[0] in ("hydra", "omegaconf")}
            problems += [f"{module} ({folder}) imports {h}" for h in sorted(heavy)]
        if folder == "inference":
            heavy = {i for i in imported if i.split(".")[0] in HEAVY}
            problems += [f"{module} (inference) imports {h}" for h in sorted(heavy)]
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_checker_sees_a_backward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from livedead.model.module import LiveDeadModule\n")
    assert "livedead.model.module" in imports_of(bad)


@pytest.mark.slow
def test_plates_and_nuclei_load_no_torch():
    """Reading plates and labelling nuclei need no deep-learning stack at all."""
    code = (
        "import sys, pkgutil, importlib, livedead.plates, livedead.nuclei\n"
        "for pkg in (livedead.plates, livedead.nuclei):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', *{HEAVY!r}))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.slow
def test_importing_inference_loads_no_training_stack():
    """A trained model deploys with torch and numpy: no Lightning, Hydra, torchmetrics, matplotlib, napari or Qt."""
    code = (
        "import sys, time, torch\n"
        "start = time.perf_counter()\n"
        "import livedead.inference, livedead.inference.sliding_window, livedead.nuclei.counting\n"
        "import livedead.inference.predictor\n"
        "print(time.perf_counter() - start)\n"
        f"print(','.join(m for m in sys.modules if m.split('.')[0] in {(*HEAVY, *GUI)!r}))\n"
        "print(','.join(m for m in ('livedead.model.module', 'livedead.data.datamodule') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seconds, heavy, training = proc.stdout.splitlines()
    assert heavy == "", heavy
    assert training == "", training
    assert float(seconds) < 5.0  # about 0.9 s here; a generous bound, as the machine is shared


def untested_modules(package: Path, tests: Path) -> list[str]:
    """Modules of ``package`` (``__init__`` aside) with neither a test file of their own
    (``livedead/a/b.py``: ``tests/a/test_b.py``) nor a test file that imports them or names them
    (``run_cli("livedead.report")``). This file's rules name modules without testing them."""
    root = package.parent
    named: set[str] = set()
    for path in tests.rglob("test_*.py"):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                named.add(node.value)
        named |= imports_of(path)
    missing = []
    for path in sorted(package.rglob("*.py")):
        if path.stem == "__init__":
            continue
        parts = path.relative_to(root).with_suffix("").parts
        own = tests.joinpath(*parts[1:-1], f"test_{parts[-1]}.py")
        if not own.exists() and ".".join(parts) not in named:
            missing.append(".".join(parts))
    return missing


def test_every_module_is_tested():
    """``tests/`` mirrors the package: every module has its test file, or a test file that uses it."""
    missing = untested_modules(PACKAGE, ROOT / "tests")
    assert not missing, "modules without tests: " + ", ".join(missing)


def test_the_mirror_check_sees_a_module_without_tests(tmp_path):
    package, tests = tmp_path / "pkg", tmp_path / "tests"
    for name in ("pkg/__init__.py", "pkg/a/__init__.py", "pkg/a/own.py", "pkg/a/used.py", "pkg/a/named.py",
                 "pkg/a/alone.py", "pkg/cmd.py", "tests/a/test_own.py", "tests/test_other.py"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    (tests / "test_other.py").write_text("from pkg.a.used import f\nrun_cli('pkg.a.named')\n")
    assert untested_modules(package, tests) == ["pkg.a.alone", "pkg.cmd"]


def test_every_package_folder_is_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    # conf/ is installed as livedead.conf, each folder of config groups a package of its own (or left out)
    groups = {".".join(("livedead", "conf", *d.relative_to(ROOT / "conf").parts)) for d in (ROOT / "conf").rglob("*")
              if d.is_dir() and d.name != "__pycache__"}  # fmt: skip
    assert found | {"livedead.conf"} | groups == listed
    scripts = project["project"]["scripts"]
    assert {v.split(":")[0].removeprefix("livedead.") for v in scripts.values()} == COMMANDS


@pytest.mark.slow
def test_a_non_editable_install_runs_from_any_folder(tmp_path):
    """``pip install .`` (not editable) carries the configs: a command runs from an empty folder outside the repo."""
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(ROOT)]
    proc = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (site / "livedead" / "conf" / "train.yaml").exists()
    installed, source = site / "livedead" / "conf", ROOT / "conf"
    assert config_files(installed) == config_files(source), "every config is installed, and nothing else"
    changed = [f for f in config_files(source) if (installed / f).read_bytes() != (source / f).read_bytes()]
    assert not changed, changed
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    check = [sys.executable, "-c", "import livedead; print(livedead.__file__)"]
    where = subprocess.run(check, capture_output=True, text=True, cwd=empty, env=env, timeout=60)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    tiny = ["debug=fdr", "data.synthetic.wells=2", "data.synthetic.timepoints=1", "data.synthetic.height=320",
            "data.synthetic.width=320", "data.batch_size=10", "model.net.base_channels=2", "model.net.depth=2",
            "callbacks.model_summary=null"]  # fmt: skip
    proc = subprocess.run(
        [str(site / "bin" / "livedead-train"), *tiny], capture_output=True, text=True, cwd=empty, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((empty / "data" / "synthetic").glob("tiles-*.h5")), "the synthetic default was generated"
    assert list((empty / "outputs" / "runs").glob("*/result.json"))
    # the requeueing launcher that "Running unattended" names, found in the installed configs
    launcher = [str(site / "bin" / "livedead-train"), "hydra/launcher=slurm", "--cfg", "hydra", "-p", "hydra.launcher"]
    proc = subprocess.run(launcher, capture_output=True, text=True, cwd=empty, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max_num_timeout: 5" in proc.stdout, proc.stdout


def config_files(folder: Path) -> set[str]:
    """The files of a config folder, as paths relative to it (Python's caches left out)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


ZARR_OWNER = "livedead.plates.omezarr"
"""The OME-Zarr plates' owner: the one module that imports zarr, ome-zarr-py or ome-zarr-models."""
TIFF_AS_ZARR = "livedead.plates.images"
"""The TIFF reader, which reads a large TIFF's strips or tiles through tifffile's zarr view (zarr, never OME-Zarr)."""


def test_each_file_format_has_one_owner():
    """Only a format's owner opens it with ``h5py.File``, touches its HDF5 attributes, reads its record's
    keys, or (OME-Zarr) imports its libraries."""
    h5_owners = {
        "livedead.data.tilefile": "the tile file",
        "livedead.plates.platefile": "the plate file",
        "livedead.inference.outputs": "the probabilities predict writes (save=hdf5), read by no module",
    }
    attrs_owners = {"livedead.data.tilefile", "livedead.plates.platefile"}
    record = ("livedead", "class_names", "net", "normalization", "foreground_threshold", "validated", "held_out_wells",
              "pixel_size_um")  # fmt: skip
    key_owners = {k: {"livedead.model.checkpoint"} for k in record}  # the checkpoint record: its entry and keys
    for key in ("class_names", "pixel_size_um"):
        key_owners[key].add("livedead.data.tilefile")  # the tile file's attributes of those names
    key_owners |= {k: {"livedead.data.transforms"} for k in ("mode", "mean", "std", "percentiles")}  # normalisation
    problems = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        zarr_imports = sorted(i for i in imports_of(path) if i.split(".")[0] in ("zarr", "ome_zarr", "ome_zarr_models"))
        if module == TIFF_AS_ZARR:
            zarr_imports = [i for i in zarr_imports if i.split(".")[0] != "zarr"]
        if zarr_imports and module != ZARR_OWNER:
            problems.append(f"{module} imports {zarr_imports[0]} (the OME-Zarr format's owner: {ZARR_OWNER})")
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{module}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                func = node.func
                opens = func.attr == "File" and isinstance(func.value, ast.Name) and func.value.id == "h5py"
                if opens and module not in h5_owners:
                    problems.append(f"{where} opens an HDF5 file (owners: {sorted(h5_owners)})")
                on_attrs = isinstance(func.value, ast.Attribute) and func.value.attr == "attrs"
                if on_attrs and func.attr in ("get", "update", "create", "modify") and module not in attrs_owners:
                    problems.append(f"{where} touches HDF5 attributes with .attrs.{func.attr}")
                if func.attr == "get" and node.args and isinstance(node.args[0], ast.Constant):
                    owners = key_owners.get(node.args[0].value, {module})
                    if module not in owners:
                        problems.append(f"{where} reads the key {node.args[0].value!r} (owners: {sorted(owners)})")
            if isinstance(node, ast.Subscript):
                if isinstance(node.value, ast.Attribute) and node.value.attr == "attrs" and module not in attrs_owners:
                    problems.append(f"{where} indexes HDF5 attributes")
                if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                    owners = key_owners.get(node.slice.value, {module})
                    if module not in owners:
                        problems.append(f"{where} indexes the key {node.slice.value!r} (owners: {sorted(owners)})")
    assert not problems, "\n".join(sorted(problems))
