"""A trained network as a BioImage Model Zoo package, so that it runs in Fiji (deepImageJ), ilastik and napari.

:func:`export_bioimageio` writes a folder in the bioimage.io model format (spec 0.5): ``rdf.yaml``
describing the input (one transmitted-light channel, any size that the network's poolings divide),
the training normalisation as the declared preprocessing (``fixed_zero_mean_unit_variance`` with
the training split's mean and std, or ``scale_range`` for per-tile percentiles), the output (the
three class probabilities, a softmax over the network's logits), the weights twice (TorchScript,
which needs no Python code, and the state dict with the network's class and arguments), a test
input and the output it must give, a cover image, a README, and the checkpoint's record
(:class:`~livedead.model.checkpoint.CheckpointRecord`: counting threshold, pixel size) under
``config.livedead``, from which :func:`load_package` rebuilds the model as livedead counts with it.
The description is built with ``bioimageio.spec`` itself, which validates it; ``pip install
"livedead[bioimageio]"`` brings it (and ``bioimageio.core``, whose ``bioimageio test <folder>`` runs the package).

The command line is :mod:`livedead.export`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from livedead.data.transforms import Normalization
from livedead.errors import LivedeadError, one_line
from livedead.files import atomic_path, check_output
from livedead.inference.sliding_window import LoadedModel, load_model
from livedead.model.checkpoint import LEGACY_NET, RECORD_KEY, CheckpointRecord, build_net, read_checkpoint


@dataclass
class ExportConfig:
    """What the package says about the model besides what the checkpoint knows (``conf/export.yaml``)."""

    name: str = "livedead U-Net"
    description: str = "Live (Hoechst) and dead (Draq7) nuclei from transmitted light, per pixel: a livedead U-Net."
    authors: list[str] = field(default_factory=lambda: ["livedead"])
    license: str = "MIT"
    """An SPDX licence identifier for the weights."""
    tags: list[str] = field(default_factory=lambda: ["unet", "semantic-segmentation", "live-dead", "nuclei", "2d"])
    sample: str | None = None
    """A plate (HDF5, image folder) whose first transmitted-light image gives the test input;
    ``None``: a synthetic image."""
    test_size: int = 256
    """Side of the test input, px (rounded down to what the network's poolings divide)."""


def export_bioimageio(ckpt: str | Path, output: str | Path, cfg: ExportConfig) -> Path:
    """Package the network of checkpoint ``ckpt`` into the folder ``output``; returns its ``rdf.yaml``.

    The folder is assembled under a temporary name and renamed into place when it is whole.
    """
    ckpt, output = Path(ckpt), Path(output)
    check_output(output, [ckpt, *([cfg.sample] if cfg.sample else [])], folder=True)
    try:
        import bioimageio.spec.model.v0_5 as spec
        from bioimageio.spec import save_bioimageio_package_as_folder
    except ImportError:
        raise LivedeadError('livedead.export needs bioimageio.spec: pip install "livedead[bioimageio]"') from None
    if output.exists() and not (output / "rdf.yaml").exists():  # never replace a folder that is not a package
        raise LivedeadError(
            f"{output}: config key 'output': expected a new folder or an earlier export (with rdf.yaml), "
            "found other files"
        )
    model = load_model(ckpt, "cpu")
    record = CheckpointRecord.of(read_checkpoint(ckpt, "ckpt"))
    model.net.to(memory_format=torch.contiguous_format)
    raw = _test_input(cfg, model)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.save(work / "test_input.npy", raw[None, None])
        with torch.no_grad():
            x = model.normalize(raw)[None, None]
            probs = model.net(x).softmax(1).numpy()
            torch.save(model.net.state_dict(), work / "weights.pt")
            # TorchScript is what deepImageJ and ilastik load, deprecated in PyTorch or not; the trace
            # fixes only the network's own size check, which the package's axis step declares
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(model.net, x, check_trace=False)
                traced.save(str(work / "weights_torchscript.pt"))
        np.save(work / "test_output.npy", probs.astype(np.float32))
        _cover(raw, probs[0], work / "cover.png")
        (work / "environment.yaml").write_text(
            "name: livedead\ndependencies:\n  - python>=3.10\n  - pip\n  - pip:\n      - livedead\n"
        )
        (work / "README.md").write_text(_readme(cfg, model, ckpt))
        try:
            descr = _describe(spec, cfg, model, work, record)
        except ValueError as err:  # pydantic's ValidationError: the spec refuses a field
            raise LivedeadError(f"{ckpt}: the bioimage.io description does not validate: {one_line(err)}") from None
        final = output.with_name(f"{output.name}.tmp-export-{os.getpid()}")  # two exports never share it
        if final.exists():
            shutil.rmtree(final)
        save_bioimageio_package_as_folder(descr, output_path=final)
    if output.exists():
        shutil.rmtree(output)
    final.rename(output)
    return output / "rdf.yaml"


def _describe(spec: Any, cfg: ExportConfig, model: LoadedModel, work: Path, record: CheckpointRecord | None) -> Any:
    norm = model.normalization
    if norm.mode == "dataset":
        kwargs = spec.FixedZeroMeanUnitVarianceKwargs(mean=norm.mean, std=norm.std)
        preprocessing = [spec.FixedZeroMeanUnitVarianceDescr(kwargs=kwargs)]
    elif norm.mode == "percentile":
        lo, hi = norm.percentiles
        kwargs = spec.ScaleRangeKwargs(axes=["y", "x"], min_percentile=lo, max_percentile=hi)
        preprocessing = [spec.ScaleRangeDescr(kwargs=kwargs)]
    else:
        preprocessing = []
    step = model.divisor
    space = [
        spec.SpaceInputAxis(id=spec.AxisId(a), size=spec.ParameterizedSize(min=step, step=step)) for a in ("y", "x")
    ]
    inputs = spec.InputTensorDescr(
        id=spec.TensorId("raw"),
        description="transmitted light, raw pixel values",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("brightfield")]), *space],
        test_tensor=spec.FileDescr(source=work / "test_input.npy"),
        preprocessing=preprocessing,
    )
    outputs = spec.OutputTensorDescr(
        id=spec.TensorId("probabilities"),
        description="per-pixel class probabilities: " + ", ".join(model.class_names),
        axes=[
            spec.BatchAxis(),
            spec.ChannelAxis(channel_names=[spec.Identifier(c) for c in model.class_names]),
            *(
                spec.SpaceOutputAxis(
                    id=spec.AxisId(a), size=spec.SizeReference(tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId(a))
                )
                for a in ("y", "x")
            ),
        ],
        test_tensor=spec.FileDescr(source=work / "test_output.npy"),
        postprocessing=[spec.SoftmaxDescr(kwargs=spec.SoftmaxKwargs(axis=spec.AxisId("channel")))],
    )
    target = model.net_spec or {}
    kwargs = {k: v for k, v in target.items() if k != "_target_"}
    module, _, callable_ = target.get("_target_", LEGACY_NET).rpartition(".")  # old checkpoints: the U-Net
    version = spec.Version(torch.__version__.split("+")[0])
    weights = spec.WeightsDescr(
        pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
            source=work / "weights.pt",
            architecture=spec.ArchitectureFromLibraryDescr(callable=callable_, import_from=module, kwargs=kwargs),
            pytorch_version=version,
            dependencies=spec.FileDescr(source=work / "environment.yaml"),
        ),
        torchscript=spec.TorchscriptWeightsDescr(
            source=work / "weights_torchscript.pt", pytorch_version=version, parent="pytorch_state_dict"
        ),
    )
    return spec.ModelDescr(
        name=cfg.name,
        description=cfg.description,
        authors=[spec.Author(name=a) for a in cfg.authors],
        cite=[
            spec.CiteEntry(
                text="Ronneberger, Fischer and Brox: U-Net: Convolutional Networks for Biomedical Image Segmentation",
                doi=spec.Doi("10.1007/978-3-319-24574-4_28"),
            )
        ],
        license=spec.LicenseId(cfg.license),
        tags=list(cfg.tags),
        documentation=spec.FileDescr(source=work / "README.md"),
        covers=[spec.FileDescr(source=work / "cover.png")],
        inputs=[inputs],
        outputs=[outputs],
        weights=weights,
        config=spec.Config(**({RECORD_KEY: asdict(record)} if record is not None else {})),
    )


def _test_input(cfg: ExportConfig, model: LoadedModel) -> np.ndarray:
    """A (H, W) float32 transmitted-light image, sides a multiple of the network's divisor."""
    from livedead.plates.sources import open_plate

    side = max(model.divisor, cfg.test_size // model.divisor * model.divisor)
    if cfg.sample:
        plate, images = open_plate(cfg.sample)
        plate.require("brightfield")
        image = next(images)
        if image.error:
            raise LivedeadError(image.error)
        bf = image.channels["brightfield"]
    else:
        from livedead.plates.synthetic import PlateSpec, render_image, simulate_well

        synthetic = PlateSpec(wells=1, timepoints=1, height=side, width=side, seed=0)
        bf = render_image(synthetic, next(iter(simulate_well(synthetic, 0))), 0, 0)[0][0]
    if min(bf.shape) < side:
        raise LivedeadError(f"{cfg.sample}: expected images of at least {side} px (config key 'test_size')")
    return np.ascontiguousarray(bf[:side, :side], np.float32)


def _cover(raw: np.ndarray, probs: np.ndarray, path: Path) -> None:
    """Input and predicted classes side by side (live green, dead magenta): the package's cover."""
    lo, hi = np.percentile(raw, (1, 99))
    grey = (np.clip((raw - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    left = np.stack([grey] * 3, axis=-1)
    classes = probs.argmax(0)
    right = left.copy() // 2
    right[classes == 1] = (60, 220, 60)
    right[classes == 2] = (230, 60, 230)
    with atomic_path(path, record=False) as tmp:  # in the export's temporary folder: not a file it keeps
        Image.fromarray(np.concatenate([left, right], axis=1)).save(tmp)


def _readme(cfg: ExportConfig, model: LoadedModel, ckpt: Path) -> str:
    norm = model.normalization
    scaling = (
        f"(x - {norm.mean:.6g}) / {norm.std:.6g}"
        if norm.mode == "dataset"
        else f"per-image {list(norm.percentiles)} percentiles to 0..1"
        if norm.mode == "percentile"
        else "none"
    )
    return f"""# {cfg.name}

{cfg.description}

Exported by `livedead.export` from `{ckpt.name}`. Input: one transmitted-light channel, raw pixel
values, sides a multiple of {model.divisor}; preprocessing {scaling}, as in training. Output: the
probabilities of {", ".join(model.class_names)} per pixel. livedead counts nuclei from them with a
calibrated threshold on P(nucleus) = 1 - P(background) (`{model.foreground_threshold}` for this model)
and a watershed (livedead's README, "Prediction and counting").

## Validation

The training run validated this network on held-out wells: its PR-AUC per class is in the run's
TensorBoard logs (`val/pr_auc/dapi`, `val/pr_auc/cy5`). To validate it on your own plates, stain
a few wells with Hoechst and Draq7 and compare `livedead.predict`'s counts with the stain-derived
counts it reports beside them.
"""


def load_package(folder: str | Path, device: str | torch.device = "cpu", tile: int = 160) -> LoadedModel:
    """The model of a package that :func:`export_bioimageio` wrote (its folder or ``rdf.yaml``), ready to
    predict and count as from the checkpoint: its state-dict weights and the record it carries."""
    rdf = Path(folder) / "rdf.yaml" if Path(folder).is_dir() else Path(folder)
    try:
        from bioimageio.spec import load_model_description
    except ImportError:
        raise LivedeadError(
            'reading a bioimage.io package needs bioimageio.spec: pip install "livedead[bioimageio]"'
        ) from None
    if not rdf.is_file():
        raise LivedeadError(f"{rdf}: expected a bioimage.io package (its rdf.yaml), found none")
    descr = load_model_description(rdf, perform_io_checks=False)
    if not hasattr(descr, "weights"):  # an InvalidDescr: the validation's first error
        first = descr.validation_summary.format().strip().splitlines()[0]
        raise LivedeadError(f"{rdf}: expected a valid bioimage.io model, found {first}")
    record = CheckpointRecord.of({RECORD_KEY: (descr.config.model_extra or {}).get(RECORD_KEY)})
    state = descr.weights.pytorch_state_dict
    if record is None or record.normalization is None or state is None:
        raise LivedeadError(
            f"{rdf}: expected a package exported by livedead.export (with its config.livedead record and "
            "state-dict weights), found none: export the checkpoint again"
        )
    net = build_net(record.net, rdf)
    net.load_state_dict(torch.load(rdf.parent / str(state.source), map_location="cpu", weights_only=True))
    net.eval().to(device, memory_format=torch.channels_last)
    return LoadedModel(
        net, record.class_names, Normalization.from_dict(record.normalization), tile,
        int(getattr(net, "size_divisor", 1)), record.foreground_threshold, record.net, record.pixel_size_um,
    )  # fmt: skip
