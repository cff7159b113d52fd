"""3D Sobel gradient magnitude in intensity units per millimetre (SciPy ``ndimage.sobel``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.classical._common import ImageInput, as_volume, finite_values, image_output
from medseg.io import Volume

#: a 3D Sobel kernel along one axis = central difference [-1, 0, 1] (2 voxels apart) times the
#: [1, 2, 1] smoothing (sum 4) along each of the two other axes: 2 * 4 * 4 per voxel of slope.
SOBEL_GAIN_3D = 32.0


def sobel_edges(image: ImageInput, *, spacing_mm: Sequence[float] | None = None) -> Volume:
    """Gradient magnitude ``|grad I|`` from 3D Sobel derivatives, in intensity units per mm.

    :func:`scipy.ndimage.sobel` gives the derivative along each array axis ``(i, j, k)``;
    each is divided by the kernel gain (32) and by the voxel spacing along that axis (mm),
    so a linear ramp of slope ``s`` per mm gives ``s`` whatever the (anisotropic) spacing.
    The magnitude is ``sqrt(d_i^2 + d_j^2 + d_k^2)``, which does not depend on the axes'
    orientation in the world because they are orthogonal. Borders extend the volume by its
    edge values (``mode="nearest"``), so on the outermost voxels a ramp reads half its slope.

    Args:
        image: Volume or 3D array ``[i, j, k]`` (then ``spacing_mm`` sets the grid).

    Returns:
        float32 image Volume on the input grid (``meta['kind'] == 'image'``). A constant
        volume gives zeros; an axis of length 1 contributes no derivative.
    """
    volume = as_volume(image, spacing_mm, "edges")
    values = finite_values(volume, "edges").astype(np.float32, copy=False)
    squared = np.zeros(volume.shape, dtype=np.float32)
    derivative = np.empty(volume.shape, dtype=np.float32)
    for axis, spacing in enumerate(volume.spacing_mm):
        if volume.shape[axis] < 2:
            continue
        ndimage.sobel(values, axis=axis, output=derivative, mode="nearest")
        derivative /= np.float32(SOBEL_GAIN_3D * spacing)
        squared += derivative * derivative
    return image_output(volume, np.sqrt(squared, out=squared), "edges", units="intensity per mm")
