"""Nearest-neighbour resampling of a label map onto another voxel grid (``--resample-pred-to-ref``).

Label maps are read with :func:`medseg.io.read_label_map`.
"""

from __future__ import annotations

import numpy as np

from medseg.io import Volume


def resample_nearest(volume: Volume, target: Volume) -> Volume:
    """``volume`` resampled onto ``target``'s voxel grid by nearest neighbour (labels stay labels).

    Every target voxel centre is mapped to ``volume``'s voxel indices through both affines
    (world mm, RAS+) and takes the value of the nearest voxel; centres outside ``volume`` get 0.
    Work done by ``scipy.ndimage.affine_transform(order=0)``. Returns a new Volume with
    ``target``'s affine and shape.
    """
    from scipy import ndimage

    voxel_to_voxel = np.linalg.inv(volume.affine) @ target.affine
    array = ndimage.affine_transform(
        np.asarray(volume.array),
        voxel_to_voxel[:3, :3],
        offset=voxel_to_voxel[:3, 3],
        output_shape=target.shape,
        order=0,
        mode="constant",
        cval=0,
        prefilter=False,
    )
    meta = {**volume.meta, "resampled_to": target.name}
    return Volume(array, target.affine.copy(), volume.source, meta)
