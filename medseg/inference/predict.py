"""Prediction: a trained run applied to scans, each result restored to its scan's exact grid.

For every input the :class:`Predictor` runs the training plan's preprocessing (medseg's
loader, reorientation, crop, resampling, normalisation; each step recorded), predicts with
Gaussian-blended sliding windows (3D) or slice by slice (2D), optionally with mirroring
test-time augmentation, turns logits into class probabilities, maps them back through the
recorded steps to the original voxel grid and takes the arg-max there. The label map written
has exactly the input's shape and affine (uint8 NIfTI), whatever its orientation or spacing.

Memory: the sliding-window accumulators live on the preprocessed grid; restoration runs one
class at a time with a running arg-max, so at most one full-size float32 probability volume
(plus the running maximum) is held at the original resolution. On CUDA the accumulators
live on the GPU and fall back to CPU memory if the GPU runs out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.common.progress import progress_bar
from medseg.errors import InvalidArgumentError, MedsegError
from medseg.io import Volume, save_volume, spacing_from_affine
from medseg.models.precision import autocast, autocast_dtype

log = logging.getLogger(__name__)


def resolve_checkpoint(model: str | Path) -> Path:
    """A checkpoint file, or a run folder's ``checkpoint_best.pt`` (else ``checkpoint_latest.pt``)."""
    path = Path(model).expanduser()
    if path.is_dir():
        for name in ("checkpoint_best.pt", "checkpoint_latest.pt"):
            if (path / name).is_file():
                return path / name
        raise MedsegError(f"{path}: no checkpoint_best.pt or checkpoint_latest.pt in this run folder")
    if not path.is_file():
        raise MedsegError(f"{path}: no such checkpoint or run folder")
    return path


@dataclass
class PredictionResult:
    case_id: str
    labels: Volume
    seconds: float
    probabilities: dict[int, np.ndarray] | None = None


@dataclass
class EnsembleMember:
    """One trained run of a :class:`Predictor`: what its checkpoint records, its network on the
    predictor's device, and the settings it predicts with."""

    checkpoint: Path
    run: Any  # medseg.config.run_spec.TrainedRun
    model: torch.nn.Module
    overlap: float
    batch_size: int
    slice_axis: int
    mirror_axes: list[int]
    autocast_dtype: torch.dtype | None  # the precision the run trained in (medseg.models.precision)


class Predictor:
    """One trained model, or an ensemble of several, with the plan, ready to predict scans.

    Args:
        model: run folder or checkpoint file written by ``medseg train``, or a list of them: an
            ensemble (e.g. the five cross-validation folds) whose softmax probabilities are
            averaged on the preprocessed grid before the arg-max. Every run of an ensemble must
            share the preprocessing plan (same grid and normalisation), the labels and the input
            channels; 2D and 3D runs on one plan may be mixed. Postprocessing is the first run's.
        device: ``cpu``, ``cuda`` or ``None`` (CUDA when available).
        overlap: sliding-window overlap in [0, 1) (default: each run's validation overlap).
        tta: mirroring test-time augmentation along the axes the training augmentation flipped
            (none if it flipped none: mirroring a left/right-labelled task would swap sides);
            :meth:`mirroring_note` says which axes that is. With an ensemble, every run mirrors.
        batch_size: windows per forward pass (default: each run's training batch size).
        postprocess: a ``postprocess`` section (dict) overriding the run's.

    Attributes:
        members: one :class:`EnsembleMember` per run, in the order given.
        run, plan, network, model, overlap, batch_size, slice_axis, mirror_axes: the first run's
            (:class:`~medseg.config.run_spec.TrainedRun`: run spec, plan, network trained, labels).

    Raises:
        MedsegError: a checkpoint is missing or not medseg's, a run is given twice, or the runs of
            an ensemble disagree on plan, labels or channels (the message names the run).
    """

    def __init__(
        self,
        model: str | Path | Sequence[str | Path],
        device: str | None = None,
        overlap: float | None = None,
        tta: bool = False,
        batch_size: int | None = None,
        postprocess: dict[str, Any] | None = None,
    ) -> None:
        from medseg.config import from_dict
        from medseg.config.run_spec import PostprocessConfig

        runs = [model] if isinstance(model, (str, Path)) else list(model)
        if not runs:
            raise InvalidArgumentError("no model given: name at least one run folder or checkpoint")
        checkpoints = [resolve_checkpoint(run) for run in runs]
        repeated = sorted({str(c) for c in checkpoints if checkpoints.count(c) > 1})
        if repeated:
            raise InvalidArgumentError(f"{repeated[0]}: given twice; an ensemble averages different runs")
        device_kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device_kind == "cuda" and not torch.cuda.is_available():
            raise InvalidArgumentError("--device cuda was asked for but CUDA is not available")
        self.device = torch.device(device_kind)
        self.tta = tta
        self.members: list[EnsembleMember] = []
        for checkpoint in checkpoints:
            state, run = _read_run(checkpoint)
            if self.members:  # before its network is built: a run with other labels has another output layer
                _check_ensemble_member(checkpoint, run, self.members[0])
            self.members.append(self._member(checkpoint, state, run, overlap, batch_size))
        first = self.members[0]
        self.checkpoint, self.run = first.checkpoint, first.run
        self.plan, self.network = first.run.plan, first.run.network
        self.labels = first.run.label_names
        self.num_classes = first.run.num_classes
        self.configuration = first.run.spec.data.configuration
        self.in_channels = first.run.in_channels
        names = [str(name) for name in self.plan.dataset.channel_names.values()]
        self.channel_names = (names + ["?"] * self.in_channels)[: self.in_channels]
        self.postprocess = (
            first.run.spec.postprocess
            if postprocess is None
            else from_dict(PostprocessConfig, postprocess, "postprocess")
        )
        if postprocess is None and any(m.run.spec.postprocess != first.run.spec.postprocess for m in self.members[1:]):
            log.warning("the runs' postprocess sections differ; using the first run's (%s)", self.checkpoint)
        self.model, self.overlap, self.batch_size = first.model, first.overlap, first.batch_size
        self.slice_axis, self.mirror_axes = first.slice_axis, first.mirror_axes

    def _member(
        self, checkpoint: Path, state: dict[str, Any], run: Any, overlap: float | None, batch_size: int | None
    ) -> EnsembleMember:
        """A checkpoint's network, ready on ``self.device``, with the settings it predicts with."""
        from medseg.models import build_unet

        network = run.network
        model = build_unet(
            run.spec.model,
            run.in_channels,
            run.num_classes,
            network.strides,
            network.kernel_sizes,
            network.base_channels,
            network.max_channels,
        )
        model.load_state_dict(state["model"])
        model.to(self.device).eval()
        return EnsembleMember(
            checkpoint=checkpoint,
            run=run,
            model=model,
            overlap=run.spec.validation.overlap if overlap is None else overlap,
            batch_size=batch_size or max(2, network.batch_size),
            slice_axis=2 if network.slice_axis is None else network.slice_axis,
            mirror_axes=list(run.mirror_axes) if self.tta else [],
            autocast_dtype=autocast_dtype(run.spec.train.amp, self.device),
        )

    def mirroring_note(self) -> str | None:
        """One line saying what ``tta`` does with this run (see :func:`mirroring_note`); ``None`` without ``tta``.
        For an ensemble whose runs mirror different axes, one such line per run, joined by ``"; "``."""
        orientation = self.plan.preprocessing.orientation
        if len({tuple(m.mirror_axes) for m in self.members}) == 1:
            return mirroring_note(self.tta, self.mirror_axes, orientation)
        return "; ".join(
            f"{m.checkpoint}: {mirroring_note(self.tta, m.mirror_axes, orientation)}" for m in self.members
        )

    @torch.no_grad()
    def predict(
        self,
        image: str | Path | Volume | Sequence[str | Path | Volume],
        case_id: str | None = None,
        keep_probabilities: bool = False,
    ) -> PredictionResult:
        """Label map (uint8 :class:`Volume` on the input's grid) for one scan.

        ``image``: the scan, or one file/Volume per channel (in the training's channel order,
        all on one grid) for a multi-channel model. ``keep_probabilities`` also returns
        per-class probabilities on the original grid (float16, one array per class value).

        Raises:
            MedsegError: the number of channels differs from the model's.
        """
        from medseg.data.restore import original_affine, restore_labels_from_probabilities
        from medseg.data.transforms import preprocess_case
        from medseg.inference.postprocess import postprocess

        started = time.perf_counter()
        channels = list(image) if isinstance(image, (list, tuple)) else [image]
        name = case_id or (str(channels[0]) if not isinstance(channels[0], Volume) else channels[0].name)
        if len(channels) != self.in_channels:
            raise MedsegError(
                f"{name}: the model takes {self.in_channels} channel(s) ({', '.join(self.channel_names)}), got "
                f"{len(channels)}; "
                "give one file per channel (nnU-Net names <case>_0000, <case>_0001, ... or a manifest)"
            )
        sample = preprocess_case(channels, self.plan.preprocessing, case_id=case_id)
        tensor = torch.as_tensor(np.ascontiguousarray(sample["image"]), dtype=torch.float32)
        probabilities = self._probabilities(tensor)
        record = sample["meta"]
        kept: dict[int, np.ndarray] | None = {} if keep_probabilities else None
        labels = restore_labels_from_probabilities(probabilities, record, keep_probabilities=kept)
        del probabilities
        affine = original_affine(record)
        spacing = spacing_from_affine(affine)
        labels = postprocess(labels, spacing, self.postprocess)
        volume = Volume(labels, affine, None, {"kind": "label", "case_id": name})
        return PredictionResult(name, volume, time.perf_counter() - started, kept)

    def _probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[classes, i, j, k]``: the softmax of each member's logits, averaged."""
        total = None
        for member in self.members:
            probabilities = torch.softmax(self._logits(image, member), dim=0)
            total = probabilities if total is None else total.add_(probabilities)
        return total if len(self.members) == 1 else total.div_(len(self.members))

    def _logits(self, image: torch.Tensor, member: EnsembleMember) -> torch.Tensor:
        """Logits of one ensemble member (sliding windows, mirroring) for a preprocessed image."""
        from medseg.models.sliding_window import predict_volume

        def run(output_device: torch.device) -> torch.Tensor:
            with autocast(member.autocast_dtype, self.device):
                return predict_volume(
                    member.model,
                    image,
                    member.run.network.patch_size,
                    self.num_classes,
                    mirror_axes=member.mirror_axes,
                    slice_axis=member.slice_axis,
                    overlap=member.overlap,
                    batch_size=member.batch_size,
                    device=self.device,
                    output_device=output_device,
                )

        if self.device.type != "cuda":
            return run(torch.device("cpu"))
        try:
            return run(self.device).cpu()
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return run(torch.device("cpu"))  # stitch in host memory


def _read_run(checkpoint: Path) -> tuple[dict[str, Any], Any]:
    """A checkpoint's saved state and its :class:`~medseg.config.run_spec.TrainedRun` (errors name the file)."""
    from medseg.config.run_spec import TrainedRun
    from medseg.models.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    return state, TrainedRun.from_checkpoint(state.get("config"), source=str(checkpoint))


def _check_ensemble_member(checkpoint: Path, run: Any, first: EnsembleMember) -> None:
    """Refuse a run that cannot be averaged with the first one, naming both and what differs."""
    problems = []
    if run.plan.preprocessing != first.run.plan.preprocessing:
        problems.append(
            "its preprocessing plan differs (grid, spacing or normalisation), so its probabilities live on another grid"
        )
    if run.labels != first.run.labels:
        problems.append(f"its labels {run.labels} differ from {first.run.labels}")
    if run.in_channels != first.run.in_channels:
        problems.append(f"it takes {run.in_channels} input channel(s), not {first.run.in_channels}")
    if problems:
        raise InvalidArgumentError(f"{checkpoint}: cannot be ensembled with {first.checkpoint}: {'; '.join(problems)}")


_AXIS_NAMES = {
    "R": "left-right",
    "L": "left-right",
    "A": "posterior-anterior",
    "P": "posterior-anterior",
    "S": "inferior-superior",
    "I": "inferior-superior",
}


def mirroring_note(tta: bool, mirror_axes: Sequence[int], orientation: str | None = "RAS") -> str | None:
    """One line saying which axes test-time mirroring flips and how many forward passes that costs.

    ``mirror_axes`` are array axes 0, 1, 2 of the preprocessed ``[i, j, k]`` grid (the axes
    the training augmentation flipped); every combination of flips is predicted, so ``n``
    axes cost ``2**n`` forward passes per sliding window (2D: per window of slices).
    ``orientation`` is the plan's (e.g. ``"RAS"``: axis 0 runs left-right, 1 posterior-anterior,
    2 inferior-superior); ``"none"`` or ``None`` (the files' voxel order) names no direction.
    Returns ``None`` when ``tta`` is False; with ``tta`` and no axis (empty ``mirror_axes``)
    the line says that nothing is mirrored, and why that may be.
    """
    if not tta:
        return None
    if not mirror_axes:
        return (
            "--tta: the training mirrored no axis (augmentation without flips, or labels that name sides "
            "such as left/right?), so no mirroring is done: 1 pass per window"
        )
    code = (orientation or "none").upper()
    anatomical = len(code) == 3 and all(letter in _AXIS_NAMES for letter in code)
    axes = sorted(int(a) for a in mirror_axes)
    shown = ", ".join(f"{a} ({_AXIS_NAMES[code[a]]})" if anatomical else str(a) for a in axes)
    grid = f"the preprocessed {code} grid" if anatomical else "the preprocessed grid (the files' voxel order)"
    return f"--tta: test-time mirroring along array axes {shown} of {grid}: {2 ** len(axes)} passes per window"


def predict_cases(
    predictor: Predictor,
    cases: Sequence[Any],
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    save_probabilities: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict ``cases`` (:class:`~medseg.inference.inputs.InputCase`) into ``out_dir/<case_id>.nii.gz``.

    Cases whose output exists are skipped unless ``overwrite``. A case that fails is reported
    (with its reason) and the others go on. Returns ``{"done", "skipped", "failed", "seconds"}``.
    """
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"done": [], "skipped": [], "failed": {}, "seconds": {}}
    for case in progress_bar(cases, desc="predict", enabled=progress):
        target = out_dir / f"{case.case_id}.nii.gz"
        if target.exists() and not overwrite:
            report["skipped"].append(case.case_id)
            continue
        try:
            result = predictor.predict(list(case.channels), case.case_id, keep_probabilities=save_probabilities)
        except (MedsegError, RuntimeError, ValueError) as exc:
            report["failed"][case.case_id] = f"{case.path}: {exc}"
            log.warning("%s failed: %s", case.case_id, exc)
            continue
        if save_probabilities and result.probabilities is not None:
            np.savez_compressed(
                out_dir / f"{case.case_id}_probabilities.npz",
                affine=result.labels.affine,
                **{f"class_{value}": p for value, p in result.probabilities.items()},
            )
        save_volume(result.labels, target, label=True)
        report["done"].append(case.case_id)
        report["seconds"][case.case_id] = round(result.seconds, 3)
    return report
