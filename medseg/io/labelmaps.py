"""Reading label maps fast (evaluation reads two per case).

:func:`read_label_map` gives the same array values, dtype and affine as
``load_volume(path, label=True)`` (checked in the tests) but is faster on NIfTI: it
decompresses the whole file in one call (with ``isal`` when that package is installed, else
``zlib``), parses the header with nibabel and views the voxel data in place, in the file's own
(Fortran) order, instead of copying it into C order. Other formats go through
:func:`medseg.io.load_volume`.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np

from medseg.errors import VolumeReadError
from medseg.io.loader import NIFTI_SUFFIXES, as_label_array, load_volume, nifti_is_scaled
from medseg.io.volume import Volume

try:  # optional, faster DEFLATE (Intel ISA-L); identical output
    from isal import isal_zlib as _fast_zlib
except ImportError:  # pragma: no cover - depends on the environment
    _fast_zlib = None

#: which library inflates .nii.gz files in :func:`read_label_map` (reported by evaluation and its benchmark)
DECOMPRESSOR = "isal" if _fast_zlib is not None else "zlib"


def read_label_map(path: str | Path) -> Volume:
    """Read a label map: whole values >= 0 as uint8 (uint16 above 255), array ``[i, j, k]``, RAS+ affine (mm).

    The array is indexed in file voxel order and the affine maps ``(i, j, k, 1)`` to RAS+ world
    mm, as with ``load_volume(path, label=True)``. NIfTI (``.nii``, ``.nii.gz``) is read here
    with nibabel's header parser and a one-shot gunzip; the array may then be read-only and
    Fortran-ordered (a view of the decompressed file). NIfTI scaling (``scl_slope``/
    ``scl_inter``) is applied; trailing singleton axes are dropped and a 2D map gets ``n_k = 1``.
    Everything else (NRRD, MetaImage, DICOM) goes through ``load_volume(path, label=True)``.

    Raises:
        VolumeReadError: missing, empty, unreadable or truncated file (gzip or NIfTI), a map that
            is not 3D after dropping singleton axes (e.g. 4D with several frames), or values that
            are not whole non-negative numbers; the message names the file.
    """
    path = Path(path).expanduser()
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        return load_volume(path, label=True)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise VolumeReadError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise VolumeReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, path)
    return _label_volume_from_nifti_bytes(raw, path)


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


def _label_volume_from_nifti_bytes(raw: bytes, path: Path) -> Volume:
    import nibabel as nib

    try:
        if len(raw) < 348:
            raise ValueError("file is shorter than a NIfTI header")
        header_class = (
            nib.Nifti2Header
            if int.from_bytes(raw[:4], "little") == 540 or int.from_bytes(raw[:4], "big") == 540
            else nib.Nifti1Header
        )
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
        raise VolumeReadError(
            f"{path}: label map has shape {array.shape}; a 3D label map is needed (extract one frame first: "
            f"medseg convert {path.name} OUT.nii.gz --label --frame N)"
        )
    if nifti_is_scaled(slope, inter):
        array = array.astype(np.float64) * (1.0 if slope is None else slope) + (0.0 if inter is None else inter)
    array = as_label_array(array, str(path))
    meta = {"format": "nifti", "kind": "label", "reader": "medseg.io.labelmaps"}
    return Volume(array, np.asarray(affine, dtype=np.float64), str(path), meta)
