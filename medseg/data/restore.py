"""Map a prediction on the preprocessed grid back to the original scan's grid, exactly.

:func:`restore_to_original` walks the step records written by :mod:`medseg.data.transforms`
(``meta["steps"]``, also stored in each cached case's JSON) backwards, handing each record to
the inverse of the transform that wrote it (:data:`medseg.data.transforms.INVERSES`; each
transform's docstring says what its inverse does):

* ``pad``: the padded border is cut off;
* ``normalize``: nothing (intensities are not predicted);
* ``resample``: back to the recorded input shape on the same extent-preserving grid (see
  :mod:`medseg.data.resample`): probabilities/logits linearly (bilinear in-plane + nearest
  across slices when the forward step was "separate z"), label maps by nearest neighbour or,
  with ``label_interpolation="linear"``, per-class linear then arg-max;
* ``crop``: the cropped-away border is filled with background (label 0, or probability 1
  for the background channel and 0 for the others, or ``outside_value``);
* ``orientation``: the axis permutation and flips are undone;
* ``load``: the result is checked against the original shape.

The output therefore has exactly the original shape, and the original affine (use
:func:`restore_volume` to get a :class:`~medseg.io.Volume` to save). When no resampling
happened (spacing unchanged), restoration is exact voxel for voxel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseg.config.plan import LABEL_MODES
from medseg.data.spatial import is_tensor
from medseg.data.transforms import INVERSES, InverseContext
from medseg.errors import GeometryError, InvalidArgumentError
from medseg.io import Volume


def _steps(record: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(record, Mapping):
        if "steps" not in record:
            raise GeometryError(
                "restore_to_original: the record has no 'steps' (pass sample['meta'] or the cached case JSON)"
            )
        return list(record["steps"])
    return list(record)


def final_shape(record: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> tuple[int, int, int]:
    """Spatial shape (voxels) of the preprocessed grid the record ends on."""
    shape = None
    for step in _steps(record):
        if step["step"] == "load":
            shape = step["shape"]
        elif "shape_out" in step:
            shape = step["shape_out"]
    if shape is None:
        raise GeometryError("restore_to_original: the record has no load step")
    return tuple(int(n) for n in shape)  # type: ignore[return-value]


def original_affine(record: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The original scan's 4 x 4 voxel-to-RAS+ affine (mm), from the record's load step."""
    for step in _steps(record):
        if step["step"] == "load":
            return np.asarray(step["affine"], dtype=np.float64)
    raise GeometryError("restore_to_original: the record has no load step")


def restore_to_original(
    prediction,
    record: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    kind: str = "auto",
    label_interpolation: str = "nearest",
    outside_value: float | Sequence[float] | None = None,
):
    """Put a prediction on the preprocessed grid back on the original grid.

    Args:
        prediction: a label map ``(X, Y, Z)`` / ``(1, X, Y, Z)`` (integer dtype), or class
            probabilities or logits ``(C, X, Y, Z)`` (float; NumPy array or torch tensor, which
            stays on its device), on the grid the record ends on (``final_shape(record)``).
        record: ``sample["meta"]`` from the transforms, a cached case's JSON dict, or the list
            of step records.
        kind: ``"label"``, ``"probabilities"`` or ``"auto"`` (integer/bool dtype -> label).
        label_interpolation: for labels across a resampling step: ``"nearest"`` (exact index
            selection) or ``"linear"`` (per-class linear interpolation then arg-max: smoother
            when the original grid is finer).
        outside_value: value for voxels outside the cropped region; default 0 for labels and
            for probabilities 1 in channel 0 (background) and 0 elsewhere. Give a per-channel
            list for logits (e.g. ``[0, -20, -20]``).

    Returns:
        The same kind of array on the original grid: labels ``(X, Y, Z)`` in the input dtype,
        probabilities ``(C, X, Y, Z)`` float32. Its affine is :func:`original_affine`.

    Raises:
        GeometryError: the prediction's shape is not the record's final shape.
    """
    steps = _steps(record)
    if kind == "auto":
        dtype = str(prediction.dtype)
        kind = "label" if ("int" in dtype or "bool" in dtype) else "probabilities"
    if kind not in ("label", "probabilities"):
        raise InvalidArgumentError(f"kind must be 'label', 'probabilities' or 'auto', got {kind!r}")
    if label_interpolation not in LABEL_MODES:
        raise InvalidArgumentError(f"label_interpolation must be one of {LABEL_MODES}, got {label_interpolation!r}")
    array = prediction
    if kind == "label":
        array = np.asarray(array.cpu() if is_tensor(array) else array)
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        array = array[0] if array.ndim == 4 else array
        array = array[None]
    elif array.ndim == 3:
        array = array[None]
    if not is_tensor(array) and kind == "probabilities" and array.dtype != np.float32:
        array = array.astype(np.float32)
    expected = final_shape(steps)
    if tuple(array.shape[1:]) != expected:
        raise GeometryError(
            f"restore_to_original: prediction has spatial shape {tuple(array.shape[1:])}, but the preprocessed grid "
            f"is {expected}"
        )
    n_channels = array.shape[0]
    if outside_value is None:
        fill = [0.0] * n_channels if kind == "label" else [1.0] + [0.0] * (n_channels - 1)
    elif np.isscalar(outside_value):
        fill = [float(outside_value)] * n_channels
    else:
        fill = [float(v) for v in outside_value]
    undo = list(reversed(steps))
    for position, step in enumerate(undo):
        if step["step"] not in INVERSES:
            raise GeometryError(f"restore_to_original: unknown step {step['step']!r} in the record")
        context = InverseContext(kind, label_interpolation, fill, undo[position + 1 :])
        array = INVERSES[step["step"]].inverse(array, step, context)
    if is_tensor(array):
        array = array.contiguous()
    else:
        array = np.ascontiguousarray(array)
    return array[0] if kind == "label" else array


def restore_labels_from_probabilities(
    probabilities, record: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, keep_probabilities: dict | None = None
) -> np.ndarray:
    """Arg-max label map (uint8; uint16 above 256 classes; original shape) from class
    probabilities or logits ``(C, X, Y, Z)`` on the preprocessed grid.

    Each class is restored linearly (:func:`restore_to_original`) one at a time and freed before
    the next, so memory holds one restored class, the running maximum and the labels, whatever
    the number of classes. Outside the cropped region the background (class 0) wins. NumPy or
    torch input (a CPU tensor is read as NumPy; a CUDA tensor is restored on its device); the
    input is not modified. ``keep_probabilities``: a dict that receives each class's restored
    values (float16, original shape) under its class index. Ties go to the lower class.
    """
    if is_tensor(probabilities) and probabilities.device.type == "cpu":
        probabilities = probabilities.numpy()  # NumPy is restored without a second full-size copy
    n_classes = int(probabilities.shape[0])
    best = labels = None
    for value in range(n_classes):
        score = restore_to_original(
            probabilities[value : value + 1], record, kind="probabilities", outside_value=[1.0 if value == 0 else 0.0]
        )[0]
        if is_tensor(score):
            score = score.cpu().numpy()
        if keep_probabilities is not None:
            keep_probabilities[value] = score.astype(np.float16)
        if best is None:  # a fresh array becomes the running maximum (a view of the input is copied)
            best = score.copy() if np.may_share_memory(score, probabilities) else score
            labels = np.zeros(best.shape, dtype=np.uint8 if n_classes <= 256 else np.uint16)
        else:
            better = score > best
            np.copyto(best, score, where=better)
            labels[better] = value
            del better
        del score
    return labels


def restore_volume(prediction, record: Mapping[str, Any], **kwargs: Any) -> Volume:
    """:func:`restore_to_original` for a label map (or a single-channel map), as a
    :class:`~medseg.io.Volume` with the original affine, ready for ``save_volume``."""
    array = restore_to_original(prediction, record, **kwargs)
    if is_tensor(array):
        array = array.cpu().numpy()
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise GeometryError(
                "restore_volume: a Volume holds one channel; restore probabilities with restore_to_original"
            )
        array = array[0]
    sources = next((s.get("sources") for s in _steps(record) if s["step"] == "load"), None)
    meta: dict[str, Any] = {"kind": "label"} if str(array.dtype).startswith(("uint", "int")) else {}
    return Volume(array, original_affine(record), None, {**meta, "restored_from": sources})
