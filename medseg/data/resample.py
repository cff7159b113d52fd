"""Resampling voxel grids to a target spacing: images, label maps and probability maps.

Grid convention (exact, and the same in both directions)
--------------------------------------------------------
A grid of ``n_in`` voxels of size ``s_in`` along an axis is resampled to
``n_out = max(1, round(n_in * s_in / s_target))`` voxels that cover **the same extent**
(the outer faces of the first and last voxels stay where they were). The output spacing is
therefore ``s_out = s_in * n_in / n_out``: the target spacing up to the rounding of the voxel
count (at most half a voxel over the whole extent). Output voxel ``o`` (0-based index) has its
centre at input index

    x_in(o) = (o + 0.5) * n_in / n_out - 0.5

which is exactly what ``torch.nn.functional.interpolate(size=n_out, align_corners=False)``
computes for ``linear``/``bilinear``/``trilinear`` and what ``mode="nearest-exact"`` rounds
(``floor((o + 0.5) * n_in / n_out)``); ``scipy.ndimage.zoom(grid_mode=True)`` uses the same
mapping for B-splines. The inverse map (back to ``n_in`` voxels) is the same formula with
``n_in`` and ``n_out`` swapped, so restoring a prediction to the original grid is another
``interpolate(size=n_in)``. The affine of the output grid is ``affine_in @ T`` with
``T = [[diag(n_in/n_out), 0.5 * n_in/n_out - 0.5], [0, 1]]`` (see :func:`resampled_affine`);
directions (also oblique ones) are unchanged. Voxel centres that fall outside the input grid
(only within half an input voxel of the border) take the nearest border value.

Anisotropic data ("separate z", as in nnU-Net): when the largest spacing is more than
``anisotropy_threshold`` (default 3) times the smallest, images are interpolated linearly
in-plane (per slice, ``bilinear``) and with nearest neighbour across slices, so slices far
apart are never blended.

Arrays are channel-first ``(C, X, Y, Z)`` (label maps may be ``(X, Y, Z)``); axis order is the
volume's ``[i, j, k]`` order. torch does the work (float32); empty inputs raise
:class:`~medseg.errors.InvalidArgumentError` (a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.config.plan import ANISOTROPY_THRESHOLD, IMAGE_MODES, LABEL_MODES
from medseg.errors import InvalidArgumentError


def output_shape(
    shape: Sequence[int], spacing_mm: Sequence[float], target_spacing_mm: Sequence[float]
) -> tuple[int, ...]:
    """Voxel counts after resampling: ``max(1, round(n * spacing / target))`` per axis (voxels)."""
    shape_arr = np.asarray(shape, dtype=np.float64)
    ratio = np.asarray(spacing_mm, dtype=np.float64) / np.asarray(target_spacing_mm, dtype=np.float64)
    return tuple(int(max(1, round(float(n)))) for n in shape_arr * ratio)


def resampled_affine(affine: np.ndarray, shape_in: Sequence[int], shape_out: Sequence[int]) -> np.ndarray:
    """Affine of the extent-preserving output grid (see module docstring); 4 x 4, RAS+ mm."""
    ratio = np.asarray(shape_in, dtype=np.float64) / np.asarray(shape_out, dtype=np.float64)
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(ratio)
    index_map[:3, 3] = 0.5 * ratio - 0.5
    return np.asarray(affine, dtype=np.float64) @ index_map


def separate_z_axis(
    spacing_mm: Sequence[float],
    target_spacing_mm: Sequence[float] | None = None,
    threshold: float = ANISOTROPY_THRESHOLD,
) -> int | None:
    """Axis to resample with nearest neighbour (the lowest-resolution one), or ``None``.

    Decided from the input spacing first, then from the target spacing (nnU-Net's rule): an
    axis qualifies when max/min spacing exceeds ``threshold`` and exactly one axis has the
    largest spacing.
    """
    for spacing in (spacing_mm, target_spacing_mm):
        if spacing is None:
            continue
        spacing = np.asarray(spacing, dtype=np.float64)
        if spacing.max() / spacing.min() > threshold:
            largest = np.flatnonzero(np.isclose(spacing, spacing.max(), rtol=1e-3))
            if largest.size == 1:
                return int(largest[0])
    return None


def _check_spatial(array: np.ndarray | torch.Tensor, shape_out: Sequence[int]) -> None:  # noqa: F821
    if any(int(n) == 0 for n in array.shape[-3:]):
        raise InvalidArgumentError(f"cannot resample an empty array of shape {tuple(array.shape)}")
    if len(shape_out) != 3 or any(int(n) < 1 for n in shape_out):
        raise InvalidArgumentError(f"output shape must be 3 positive voxel counts, got {tuple(shape_out)}")


def _as_float_tensor(array):
    import torch

    if isinstance(array, torch.Tensor):
        return array.float() if array.dtype != torch.float32 else array
    # one pass: convert to float32 and to C order (views from reorientation or Fortran-ordered
    # arrays from the readers are copied once, not twice)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _interpolate_linear(volume, shape_out: Sequence[int], z_axis: int | None):
    """(C, X, Y, Z) float tensor -> (C, *shape_out); trilinear, or linear in-plane + nearest along ``z_axis``.

    "Separate z" is done without moving axes: nearest-neighbour selection along ``z_axis``
    (before the in-plane step when it reduces the slice count, after it otherwise) and a
    trilinear interpolation that leaves ``z_axis`` at its size, which is an exact identity
    along that axis (the sampling positions fall on the voxel centres, weights 1 and 0).
    """
    import torch.nn.functional as F

    shape_out = tuple(int(n) for n in shape_out)
    if tuple(volume.shape[1:]) == shape_out:
        return volume
    if z_axis is None:
        return F.interpolate(volume[None], size=shape_out, mode="trilinear", align_corners=False)[0]
    n_in, n_out = int(volume.shape[z_axis + 1]), shape_out[z_axis]
    if n_out <= n_in:
        volume = _select_slices(volume, z_axis, n_in, n_out)
    plane_size = tuple(n if a != z_axis else int(volume.shape[z_axis + 1]) for a, n in enumerate(shape_out))
    if tuple(volume.shape[1:]) != plane_size:
        volume = F.interpolate(volume[None], size=plane_size, mode="trilinear", align_corners=False)[0]
    if n_out > n_in:
        volume = _select_slices(volume, z_axis, n_in, n_out)
    return volume


def _select_slices(volume, z_axis: int, n_in: int, n_out: int):
    """Nearest-neighbour selection of ``n_out`` slices along ``z_axis`` (NumPy ``take`` on CPU,
    which is much faster there than ``torch.index_select``; ``index_select`` on GPU)."""
    import torch

    if n_in == n_out:
        return volume
    index = nearest_indices(n_in, n_out)
    if volume.device.type == "cpu":
        return torch.from_numpy(np.take(volume.numpy(), index, axis=z_axis + 1))
    return volume.index_select(z_axis + 1, torch.from_numpy(index).to(volume.device))


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Input index nearest to each output voxel centre: ``floor((o + 0.5) * n_in / n_out)`` (int64)."""
    index = np.floor((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.clip(index, 0, n_in - 1)


def resample_image(
    image: np.ndarray,
    shape_out: Sequence[int],
    *,
    mode: str = "linear",
    separate_z: int | None = None,
) -> np.ndarray:
    """Resample a channel-first image ``(C, X, Y, Z)`` to ``shape_out`` voxels (float32 out).

    ``mode``: ``"linear"`` (torch trilinear, or bilinear in-plane + nearest along ``separate_z``),
    ``"bspline"`` (cubic B-spline with ``scipy.ndimage.zoom``, same grid mapping; slower) or
    ``"nearest"``. Returns the input unchanged (as float32) when the shape already matches.
    """
    if mode not in IMAGE_MODES:
        raise InvalidArgumentError(f"image interpolation must be one of {IMAGE_MODES}, got {mode!r}")
    _check_spatial(image, shape_out)
    shape_out = tuple(int(n) for n in shape_out)
    if tuple(image.shape[1:]) == shape_out:
        return np.array(image, dtype=np.float32)  # a copy: later steps work in place
    if mode == "bspline":
        return _resample_bspline(image, shape_out, separate_z)
    if mode == "nearest":
        return _nearest(np.asarray(image), shape_out).astype(np.float32, copy=False)
    import torch

    order = _memory_order(np.asarray(image))
    if order != [0, 1, 2] and np.prod(shape_out) < np.prod(image.shape[1:]):
        # e.g. Fortran-ordered arrays from the readers: interpolate in memory order (no
        # transposing copy of the large input) and hand back a transposed view of the output
        view = np.transpose(image, [0] + [1 + a for a in order])
        z_axis = order.index(separate_z) if separate_z is not None else None
        with torch.no_grad():
            out = _interpolate_linear(_as_float_tensor(view), [shape_out[a] for a in order], z_axis).numpy()
        return np.transpose(out, [0] + [1 + order.index(a) for a in range(3)])
    with torch.no_grad():
        out = _interpolate_linear(_as_float_tensor(image), shape_out, separate_z)
    return out.numpy()


def _memory_order(array: np.ndarray) -> list[int]:
    """Spatial axes (0..2 of the last three) from the slowest- to the fastest-varying in memory."""
    strides = [abs(array.strides[array.ndim - 3 + a]) for a in range(3)]
    return sorted(range(3), key=lambda a: -strides[a])


def _resample_bspline(image: np.ndarray, shape_out: tuple[int, ...], separate_z: int | None) -> np.ndarray:
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float32)
    zoom = [1.0] + [o / i for o, i in zip(shape_out, image.shape[1:])]
    if separate_z is not None:
        zoom[separate_z + 1] = 1.0
    out = np.stack(
        [ndimage.zoom(channel, zoom[1:], order=3, mode="nearest", grid_mode=True, prefilter=True) for channel in image]
    )
    # zoom rounds the output size; force the exact size the grid convention prescribes
    if separate_z is not None:
        index = nearest_indices(image.shape[separate_z + 1], shape_out[separate_z])
        out = np.take(out, index, axis=separate_z + 1)
    if tuple(out.shape[1:]) != shape_out:
        raise InvalidArgumentError(f"B-spline zoom gave {out.shape[1:]} instead of {shape_out}")
    return out.astype(np.float32, copy=False)


def _nearest(array: np.ndarray, shape_out: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resampling of the last three axes by index selection (any dtype, exact).

    Works in the array's memory order (e.g. Fortran order from the readers) and returns a
    view in the original axis order, so no large transposing copy is made."""
    array = np.asarray(array)
    offset = array.ndim - 3
    order = _memory_order(array)
    lead = list(range(offset))
    out = np.transpose(array, lead + [offset + a for a in order])
    for position, axis in enumerate(order):
        n_in, n_out = out.shape[offset + position], int(shape_out[axis])
        if n_in != n_out:
            out = np.take(out, nearest_indices(n_in, n_out), axis=offset + position)
    return np.transpose(out, lead + [offset + order.index(a) for a in range(3)])


def resample_label(
    label: np.ndarray,
    shape_out: Sequence[int],
    *,
    mode: str = "nearest",
    separate_z: int | None = None,
    keep_all_classes: bool = True,
) -> np.ndarray:
    """Resample an integer label map ``(X, Y, Z)`` or ``(1, X, Y, Z)``; the dtype is kept.

    ``mode="nearest"`` selects the input voxel nearest to each output centre (exact index
    selection, no arithmetic on labels). ``mode="linear"`` interpolates each class's indicator
    linearly (bilinear in-plane + nearest along ``separate_z`` for anisotropic data) and takes
    the arg-max, which gives smoother boundaries when upsampling (nnU-Net's choice); it keeps
    at most two float volumes in memory. With ``keep_all_classes`` a class present in the
    input but lost in the output (a structure smaller than an output voxel) is put back at
    the output voxel where its linearly interpolated indicator is largest.
    """
    if mode not in LABEL_MODES:
        raise InvalidArgumentError(f"label interpolation must be one of {LABEL_MODES}, got {mode!r}")
    _check_spatial(label, shape_out)
    label = np.asarray(label)
    if not (np.issubdtype(label.dtype, np.integer) or label.dtype == np.bool_):
        raise InvalidArgumentError(f"label maps must have an integer dtype, got {label.dtype}")
    shape_out = tuple(int(n) for n in shape_out)
    squeeze = label.ndim == 3
    volume = label if squeeze else label[0]
    if volume.shape == shape_out:
        out = volume.copy()
    elif mode == "nearest":
        out = _nearest(volume, shape_out)
    else:
        out = _linear_argmax(volume, shape_out, separate_z)
    if keep_all_classes and volume.shape != shape_out:
        _restore_lost_classes(volume, out, separate_z)
    return out if squeeze else out[None]


def _class_values(volume: np.ndarray) -> np.ndarray:
    """Sorted label values present (memory-order traversal: no copy for Fortran-ordered maps)."""
    flat = np.ravel(volume, order="K")
    if volume.dtype in (np.uint8, np.bool_):
        return np.flatnonzero(np.bincount(flat.view(np.uint8), minlength=2))
    return np.unique(flat)


def _linear_argmax(volume: np.ndarray, shape_out: tuple[int, ...], separate_z: int | None) -> np.ndarray:
    import torch

    values = _class_values(volume)
    source = torch.from_numpy(np.ascontiguousarray(volume))
    best_score = None
    best_label = torch.zeros(shape_out, dtype=torch.int64)
    with torch.no_grad():
        for value in values:
            indicator = (source == int(value)).to(torch.float32)[None]
            score = _interpolate_linear(indicator, shape_out, separate_z)[0]
            if best_score is None:
                best_score = score
                best_label.fill_(int(value))
                continue
            better = score > best_score
            best_label.masked_fill_(better, int(value))
            torch.maximum(best_score, score, out=best_score)
    return best_label.numpy().astype(volume.dtype)


def _restore_lost_classes(volume: np.ndarray, out: np.ndarray, separate_z: int | None) -> list[int]:
    """Put back classes present in ``volume`` but absent from ``out`` (in place); returns them."""
    import torch

    lost = sorted(set(_class_values(volume).tolist()) - set(_class_values(out).tolist()))
    for value in lost:
        with torch.no_grad():
            indicator = torch.from_numpy((volume == value).astype(np.float32))[None]
            score = _interpolate_linear(indicator, out.shape, separate_z)[0].numpy()
        order = np.argsort(score, axis=None)[::-1]
        for flat in order[:64]:  # avoid erasing the last voxel of another class
            position = np.unravel_index(flat, out.shape)
            if np.count_nonzero(out == out[position]) > 1:
                out[position] = value
                break
        else:
            out[np.unravel_index(order[0], out.shape)] = value
    return lost


def resample_probabilities(
    probabilities,
    shape_out: Sequence[int],
    *,
    separate_z: int | None = None,
):
    """Resample class probabilities / logits ``(C, X, Y, Z)`` linearly (float32).

    Accepts a NumPy array or a torch tensor (returned as the same kind; a CUDA tensor stays on
    its device). Same grid mapping and "separate z" handling as :func:`resample_image`.
    """
    import torch

    _check_spatial(probabilities, shape_out)
    is_tensor = isinstance(probabilities, torch.Tensor)
    with torch.no_grad():
        out = _interpolate_linear(_as_float_tensor(probabilities), shape_out, separate_z)
    return out if is_tensor else out.numpy()
