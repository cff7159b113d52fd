"""Sliding-window prediction with Gaussian blending (the core used by validation and inference).

Windows of ``patch_size`` tile the image with the requested overlap; window starts are spread
evenly between the first and last possible position (as nnU-Net does), so the image edges
are covered without a ragged last step. Each window's logits are weighted by a Gaussian
importance map (sigma = ``sigma_scale`` x patch size, floored at a small positive value so
window borders still count) and the weighted sum is divided by the summed weights. Images
smaller than the patch are padded (with the image minimum) and cropped back.

Shapes: ``image`` is ``[items, channels, *spatial]``. For a 3D model ``items`` is 1 and
``spatial`` is ``[i, j, k]``; for a 2D model applied slice by slice, the slices are the
items and ``spatial`` is ``[i, j]`` (see :func:`predict_volume`). Output logits are
``[items, classes, *spatial]`` on ``output_device``, accumulated in float32.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from medseg.common.progress import progress_bar
from medseg.errors import InvalidArgumentError


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices (voxels) of windows of length ``patch`` covering ``size`` with ``overlap`` in [0, 1)."""
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    n_windows = int(np.ceil((size - patch) / step)) + 1
    return [int(round(x)) for x in np.linspace(0, size - patch, n_windows)]


def gaussian_importance(patch_size: Sequence[int], sigma_scale: float = 0.125, floor: float = 1e-3) -> torch.Tensor:
    """Separable Gaussian weight map of ``patch_size``, peak 1, minimum ``floor`` (float32)."""
    weights = None
    for n in patch_size:
        centre = (n - 1) / 2.0
        sigma = max(n * sigma_scale, 1e-6)
        profile = torch.exp(-0.5 * ((torch.arange(n, dtype=torch.float64) - centre) / sigma) ** 2)
        weights = profile if weights is None else weights[..., None] * profile
    weights = weights / weights.max()
    return weights.clamp_min(floor).to(torch.float32)


@torch.no_grad()
def sliding_window_logits(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    overlap: float = 0.5,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    output_device: torch.device | str = "cpu",
    sigma_scale: float = 0.125,
    blend: str = "gaussian",
    progress: bool = False,
) -> torch.Tensor:
    """Blend window predictions over an image; see the module docstring.

    Args:
        predictor: maps ``[batch, channels, *patch]`` to logits ``[batch, classes, *patch]``.
        image: ``[items, channels, *spatial]``.
        patch_size: window size per spatial axis (voxels).
        num_classes: channels of the predictor's output.
        overlap: fraction of a window shared with its neighbour along each axis, in [0, 1).
        batch_size: windows (times items) per forward pass.
        device: where the predictor runs (default: the image's device).
        output_device: where the full-size accumulators live (CPU keeps GPU memory bounded).
        blend: ``"gaussian"`` (default) or ``"constant"`` (plain average).

    Returns:
        float32 logits ``[items, classes, *spatial]`` on ``output_device``.
    """
    if not 0.0 <= overlap < 1.0:
        raise InvalidArgumentError(f"overlap must be in [0, 1), got {overlap}")
    spatial = tuple(image.shape[2:])
    if len(spatial) != len(patch_size):
        raise InvalidArgumentError(
            f"image has {len(spatial)} spatial axes, patch_size {tuple(patch_size)} has {len(patch_size)}"
        )
    device = torch.device(device) if device is not None else image.device
    padded, crop = _pad_to(image, patch_size)
    padded_shape = tuple(padded.shape[2:])
    items = padded.shape[0]
    logits = torch.zeros((items, num_classes, *padded_shape), dtype=torch.float32, device=output_device)
    weight_sum = torch.zeros(padded_shape, dtype=torch.float32, device=output_device)
    if blend == "gaussian":
        importance = gaussian_importance(patch_size, sigma_scale)
    elif blend == "constant":
        importance = torch.ones(tuple(patch_size), dtype=torch.float32)
    else:
        raise InvalidArgumentError(f"blend must be 'gaussian' or 'constant', got {blend!r}")
    importance_out = importance.to(output_device)
    importance_dev = importance.to(device)

    starts = list(itertools.product(*(window_starts(s, p, overlap) for s, p in zip(padded_shape, patch_size))))
    windows = [tuple(slice(s, s + p) for s, p in zip(start, patch_size)) for start in starts]
    # one forward pass takes up to `batch_size` (item, window) pairs
    pairs = [(item, window) for window in windows for item in range(items)]
    starts = range(0, len(pairs), batch_size)
    for first in progress_bar(starts, desc="sliding window", unit="batch", enabled=progress, leave=False):
        chunk = pairs[first : first + batch_size]
        batch = torch.stack([padded[item][(slice(None), *window)] for item, window in chunk]).to(device)
        output = predictor(batch)
        if output.shape[1] != num_classes:
            raise InvalidArgumentError(f"predictor returned {output.shape[1]} channels, expected {num_classes}")
        output = (output.float() * importance_dev).to(output_device)
        for (item, window), window_logits in zip(chunk, output):
            logits[item][(slice(None), *window)] += window_logits
    for window in windows:
        weight_sum[window] += importance_out
    logits /= weight_sum
    return logits[(slice(None), slice(None), *crop)]


def _pad_to(image: torch.Tensor, patch_size: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad spatial axes symmetrically up to ``patch_size`` with the image minimum; return the crop back."""
    spatial = image.shape[2:]
    before = [max(0, p - s) // 2 for s, p in zip(spatial, patch_size)]
    after = [max(0, p - s) - b for s, p, b in zip(spatial, patch_size, before)]
    crop = tuple(slice(b, b + s) for b, s in zip(before, spatial))
    if not any(before) and not any(after):
        return image, crop
    pad = [w for b, a in zip(reversed(before), reversed(after)) for w in (b, a)]
    fill = float(image.min()) if image.numel() else 0.0
    return torch.nn.functional.pad(image, pad, value=fill), crop


def predict_volume(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    mirror_axes: Sequence[int] = (),
    slice_axis: int = 2,
    **kwargs,
) -> torch.Tensor:
    """Logits ``[classes, i, j, k]`` for one volume ``image`` ``[channels, i, j, k]``.

    ``len(patch_size)`` decides the model type: 3 entries = a 3D model over the volume; 2
    entries = a 2D model applied to every slice across ``slice_axis`` (default 2: the
    ``[i, j]`` slices, one per ``k``), batched. ``mirror_axes``
    (spatial axes 0, 1, 2 of ``[i, j, k]``) adds test-time augmentation: the prediction is
    averaged over every combination of flips of those axes (2^n passes). Other keyword
    arguments go to :func:`sliding_window_logits`.
    """
    if image.dim() != 4:
        raise InvalidArgumentError(f"image must be [channels, i, j, k], got shape {tuple(image.shape)}")
    two_d = len(patch_size) == 2
    if two_d and slice_axis in mirror_axes:
        raise InvalidArgumentError(f"a 2D model cannot mirror along its slice axis ({slice_axis})")
    if two_d and slice_axis != 2:  # put the slice axis last, predict, put it back
        moved = predict_volume(
            predictor,
            image.movedim(slice_axis + 1, -1),
            patch_size,
            num_classes,
            [2 if a == slice_axis else a - (a > slice_axis) for a in mirror_axes],
            2,
            **kwargs,
        )
        return moved.movedim(-1, slice_axis + 1)
    combos = [c for r in range(len(mirror_axes) + 1) for c in itertools.combinations(mirror_axes, r)]
    total = None
    for flip in combos:
        flipped = image.flip([a + 1 for a in flip]) if flip else image
        items = flipped.permute(3, 0, 1, 2) if two_d else flipped[None]  # 2D: slices become items
        logits = sliding_window_logits(predictor, items, patch_size, num_classes, **kwargs)
        logits = logits.permute(1, 2, 3, 0) if two_d else logits[0]  # -> [classes, i, j, k]
        if flip:
            logits = logits.flip([a + 1 for a in flip])
        total = logits if total is None else total.add_(logits)
    return total / len(combos)
