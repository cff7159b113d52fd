"""Reading label maps fast for evaluation, and nearest-neighbour resampling onto a grid.

:func:`read_label_map` gives the same array values and affine as
``medseg.io.load_volume(path, label=True)`` (checked in the tests) but is several times faster
on NIfTI: it decompresses the whole file in one call (with ``isal`` when that package is
installed, else ``zlib``), parses the header with nibabel and views the voxel data in place,
in the file's own (Fortran) order, instead of copying it into C order. Other formats go
through :func:`medseg.io.load_volume`.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np

from medseg.errors import VolumeReadError
from medseg.io import Volume
from medseg.io.loader import as_label_array

try:  # optional, faster DEFLATE (Intel ISA-L); identical output
    from isal import isal_zlib as _fast_zlib
except ImportError:  # pragma: no cover - depends on the environment
    _fast_zlib = None

#: which library inflates .nii.gz files (reported by the benchmark)
DECOMPRESSOR = "isal" if _fast_zlib is not None else "zlib"


def _gunzip(data: bytes, path: Path) -> bytes:
    """Whole-file gzip decompression (all members), with isal when available."""
    lib = _fast_zlib or zlib
    out = []
    try:
        while data:
            inflater = lib.decompressobj(31)
            out.append(inflater.decompress(data))
            if not inflater.eof:
                raise VolumeReadError(f"{path}: truncated gzip stream (file ends before the data does)")
            data = inflater.unused_data
            while data[:1] == b"\x00":  # padding after the last member
                data = data[1:]
    except (zlib.error, OSError) as exc:  # isal raises its own error type
        raise VolumeReadError(f"{path}: unreadable gzip data ({exc})") from None
    except Exception as exc:
        if type(exc).__name__ == "error":
            raise VolumeReadError(f"{path}: unreadable gzip data ({exc})") from None
        raise
    return out[0] if len(out) == 1 else b"".join(out)


def read_label_map(path: str | Path) -> Volume:
    """Read a label map for evaluation: integer values >= 0, array ``[i, j, k]``, RAS+ affine.

    NIfTI (``.nii``, ``.nii.gz``) is read here (the array may be read-only and Fortran-ordered,
    a view of the decompressed file); everything else via
    ``medseg.io.load_volume(path, label=True)``. Raises :class:`VolumeReadError` naming the
    file for unreadable or truncated files, 4D data with more than one frame, or values that
    are not whole non-negative numbers.
    """
    path = Path(path).expanduser()
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        from medseg.io import load_volume

        return load_volume(path, label=True)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise VolumeReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, path)
    return _label_volume_from_nifti_bytes(raw, path)


def _label_volume_from_nifti_bytes(raw: bytes, path: Path) -> Volume:
    import nibabel as nib

    try:
        if len(raw) < 348:
            raise ValueError("file is shorter than a NIfTI header")
        header_class = nib.Nifti2Header if int.from_bytes(raw[:4], "little") == 540 or int.from_bytes(raw[:4], "big") == 540 else nib.Nifti1Header
        header = header_class.from_fileobj(io.BytesIO(raw), check=False)
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = header.get_data_dtype()
        offset = int(header.get_data_offset())
        count = int(np.prod(shape))
        if offset + count * dtype.itemsize > len(raw):
            raise ValueError(f"data needs {offset + count * dtype.itemsize} bytes, file has {len(raw)}")
        array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")
        affine = header.get_best_affine()
        slope, inter = header.get_slope_inter()
    except VolumeReadError:
        raise
    except Exception as exc:
        raise VolumeReadError(f"{path}: unreadable or truncated NIfTI file ({type(exc).__name__}: {exc})") from None
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise VolumeReadError(f"{path}: label map has shape {array.shape}; evaluation needs a 3D label map")
    if not (slope in (None, 1.0) and inter in (None, 0.0)):
        array = array.astype(np.float64) * (1.0 if slope is None else slope) + (0.0 if inter is None else inter)
    array = as_label_array(array, str(path))
    meta = {"format": "nifti", "kind": "label", "reader": "medseg.evaluation.reading"}
    return Volume(array, np.asarray(affine, dtype=np.float64), str(path), meta)


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
