"""Run-length encoding of 2D masks (Kaggle convention) and the naming of a volume's 2D images.

Encoding
--------
A 2D mask of shape ``(n_rows, n_columns)`` is read in **column-major** (Fortran) order: down
the first column (row index varying fastest), then down the second, ... Pixels are numbered
from **1**, so pixel ``[row, column]`` has number ``1 + row + column * n_rows``. The encoding
is ``"start length start length ..."`` for every run of foreground pixels, starts increasing;
an empty mask encodes as ``""``. This is ``mask.ravel(order="F")`` in NumPy.

2D images of a 3D volume
------------------------
medseg volumes are indexed ``[i, j, k]`` (file voxel order; see :mod:`medseg.io.volume`).
The 2D images are the slices along the third axis ``k``: image ``k`` is ``array[:, :, k]``,
a ``(n_i, n_j)`` mask whose **rows are indexed by i** and **columns by j**, so i varies
fastest in the run-length order (pixel number ``1 + i + j * n_i``). It is named
``<case>_slice_<k>``, ``k`` counted from 0 and zero-padded to at least 3 digits
(``patient001_ED_slice_000``, ..., ``patient001_ED_slice_009``; ``_slice_1000`` above 999).
For a NIfTI file this is the voxel order on disk, so ``nibabel`` data ``[:, :, k]`` is the
image. (A PNG-style ``(height, width)`` image displayed from a DICOM-ordered volume has the
j axis as its rows; transpose it before comparing.)
"""

from __future__ import annotations

import re

import numpy as np

from medseg.errors import InvalidArgumentError

SLICE_SEPARATOR = "_slice_"
_SLICE_ID = re.compile(r"(?P<case>.+)_slice_(?P<k>\d{3,})")


def rle_encode(mask_2d: np.ndarray) -> str:
    """Run-length encode a 2D binary mask: ``"start length ..."``, 1-based, column-major.

    Args:
        mask_2d: 2D array of 0/1 or bool, shape ``(n_rows, n_columns)`` (see the module
            docstring for which volume axes these are).

    Returns:
        The encoding; ``""`` for an all-zero (or zero-size) mask. Vectorised with NumPy: runs
        are found from the changes of the flattened mask, O(pixels).

    Raises:
        InvalidArgumentError (a ValueError): not 2D, or values other than 0 and 1.
    """
    mask = np.asarray(mask_2d)
    if mask.ndim != 2:
        raise InvalidArgumentError(f"rle_encode needs a 2D mask, got shape {mask.shape}")
    if mask.dtype != np.bool_:
        if mask.size and (mask.min() < 0 or mask.max() > 1):
            values = np.unique(mask)
            raise InvalidArgumentError(f"rle_encode needs a binary mask (0/1), got values {values[:10].tolist()}")
        mask = mask != 0
    flat = mask.ravel(order="F")
    if flat.size == 0 or not flat.any():
        return ""
    padded = np.empty(flat.size + 2, dtype=np.bool_)
    padded[0] = padded[-1] = False
    padded[1:-1] = flat
    edges = np.flatnonzero(padded[1:] != padded[:-1])  # run starts and ends, 0-based, alternating
    starts, ends = edges[0::2], edges[1::2]
    pairs = np.empty(2 * starts.size, dtype=np.int64)
    pairs[0::2] = starts + 1
    pairs[1::2] = ends - starts
    return " ".join(map(str, pairs.tolist()))


def rle_decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode ``"start length ..."`` (1-based, column-major) into a uint8 0/1 mask of ``shape``.

    ``""`` (or whitespace) decodes to an all-zero mask. Runs must lie inside the image, have
    positive lengths, increase and not overlap (touching runs are accepted). Vectorised with
    NumPy (``np.repeat`` of the run offsets), O(pixels) for the zeroed output plus
    O(foreground pixels).

    Raises:
        InvalidArgumentError (a ValueError): odd number of values, non-integers, or a run that is out of bounds,
            empty, out of order or overlapping; the message says which run.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2 or min(shape) < 0:
        raise InvalidArgumentError(f"rle_decode needs a 2D shape, got {shape}")
    n_pixels = shape[0] * shape[1]
    text = "" if rle is None else str(rle).strip()
    if not text:
        return np.zeros(shape, dtype=np.uint8)
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise InvalidArgumentError(f"run-length encoding holds non-integers: {text[:60]!r}") from None
    if values.size % 2:
        raise InvalidArgumentError(f"run-length encoding has an odd number of values ({values.size})")
    starts, lengths = values[0::2] - 1, values[1::2]
    ends = starts + lengths
    _check_runs(starts, lengths, ends, n_pixels, shape)
    # Index of every foreground pixel, without a Python loop: pixel number within its run
    # (arange over all runs' pixels) plus that run's offset (np.repeat), O(foreground pixels).
    flat = np.zeros(n_pixels, dtype=np.uint8)
    pixels_before = np.cumsum(lengths) - lengths
    flat[np.arange(lengths.sum()) + np.repeat(starts - pixels_before, lengths)] = 1
    return flat.reshape(shape, order="F")


def _check_runs(starts: np.ndarray, lengths: np.ndarray, ends: np.ndarray, n_pixels: int, shape: tuple) -> None:
    def run(index: int) -> str:  # noqa: D401 - names a run in messages
        return f"run {index + 1} ('{starts[index] + 1} {lengths[index]}')"

    bad = np.flatnonzero(starts < 0)
    if bad.size:
        raise InvalidArgumentError(f"{run(bad[0])}: starts are 1-based, so must be >= 1")
    bad = np.flatnonzero(lengths < 1)
    if bad.size:
        raise InvalidArgumentError(f"{run(bad[0])}: length must be >= 1")
    bad = np.flatnonzero(ends > n_pixels)
    if bad.size:
        raise InvalidArgumentError(
            f"{run(bad[0])}: runs past the last pixel ({n_pixels} pixels in a {shape[0]} x {shape[1]} image)"
        )
    bad = np.flatnonzero(starts[1:] < ends[:-1])
    if bad.size:
        raise InvalidArgumentError(f"{run(bad[0] + 1)}: overlaps or precedes the run before it (starts must increase)")


def slice_image_id(case_id: str, k: int) -> str:
    """Name of 2D image ``k`` (0-based, along array axis k) of a case: ``"<case>_slice_<k:03d>"``."""
    if k < 0:
        raise InvalidArgumentError(f"slice index must be >= 0, got {k}")
    return f"{case_id}{SLICE_SEPARATOR}{k:03d}"


def parse_slice_image_id(image_id: str) -> tuple[str, int] | None:
    """Inverse of :func:`slice_image_id`: ``(case_id, k)``, or ``None`` if the name does not fit."""
    match = _SLICE_ID.fullmatch(image_id)
    if not match:
        return None
    return match.group("case"), int(match.group("k"))


def volume_rle_rows(case_id: str, labels: np.ndarray, classes: list[int] | None = None) -> list[tuple]:
    """Run-length rows for every 2D image (slice along axis k) of a label volume.

    Args:
        case_id: the case id used in the image names.
        labels: 3D label array indexed ``[i, j, k]``.
        classes: ``None`` for one binary class (foreground = any non-zero label): rows are
            ``(image_id, rle)``. A list of label values gives rows ``(image_id, class, rle)``
            for every slice and every class, empty string where the class is absent.

    Returns:
        Rows in slice order (then class order); a volume with no slices gives ``[]``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InvalidArgumentError(f"{case_id}: volume_rle_rows needs a 3D label array, got shape {labels.shape}")
    rows: list[tuple] = []
    for k in range(labels.shape[2]):
        image = labels[:, :, k]
        image_id = slice_image_id(case_id, k)
        if classes is None:
            rows.append((image_id, rle_encode(image != 0)))
        else:
            rows.extend((image_id, label, rle_encode(image == label)) for label in classes)
    return rows
