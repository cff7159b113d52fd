"""One loader for every supported format, and the NIfTI writer.

Supported inputs: NIfTI (``.nii``, ``.nii.gz``; read with nibabel), NRRD (``.nrrd``,
``.nhdr``), MetaImage (``.mha``, ``.mhd``) (read with SimpleITK) and DICOM series (a
folder, or one file of the series; see :mod:`medseg.io.dicom`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medseg.common.naming import ITK_SUFFIXES, NIFTI_SUFFIXES
from medseg.errors import VolumeReadError
from medseg.io.atomic import atomic_path, default_file_mode
from medseg.io.dicom import is_dicom_file, read_dicom_series
from medseg.io.hounsfield import AIR_FLOOR_HU, looks_like_hu, to_hounsfield
from medseg.io.volume import Volume, affine_from_sitk, check_same_grid, itk_geometry_from_affine

log = logging.getLogger(__name__)

#: formats whose header names a separate data file
DETACHED_HEADER_SUFFIXES = (".nhdr", ".mhd")
SUPPORTED = "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) or a DICOM series folder"


def file_format(path: str | Path) -> str:
    """``"nifti"``, ``"itk"`` (NRRD/MetaImage) or ``"dicom"`` for a path; raises for anything else."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_SUFFIXES):
        return "itk"
    if name.endswith(".dcm") or is_dicom_file(path):
        return "dicom"
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder")
    raise VolumeReadError(f"{path}: unsupported file type; medseg reads {SUPPORTED}")


def load_volume(
    path: str | Path,
    *,
    label: bool = False,
    ct: bool | None = None,
    clip_hu: tuple[float, float] | None = None,
    air_floor_hu: float = AIR_FLOOR_HU,
    frame: int | None = None,
    series_uid: str | None = None,
    resample_nonuniform: bool = False,
) -> Volume:
    """Read a 3D volume with its geometry (array ``[i, j, k]``, RAS+ affine in mm).

    Args:
        path: NIfTI/NRRD/MHA file, a DICOM series folder or one file of a DICOM series.
        label: read a label map: values must be whole numbers >= 0; returned as uint8
            (or uint16 above 255). No intensity handling.
        ct: Hounsfield handling. ``None`` (default) applies it when the data are CT (DICOM
            Modality CT, or values that look like HU); ``True`` requires HU and raises if the
            values do not look like HU; ``False`` leaves values as read.
            HU handling maps padding below ``air_floor_hu`` to air and clips to ``clip_hu``.
            Rescale slope/intercept are applied exactly once, by the file reader.
        clip_hu: optional ``(low, high)`` HU window applied after padding removal.
        air_floor_hu: values below this are padding and become this value (default -1024).
        frame: for 4D files, the index along the 4th axis to read (else 4D is an error).
        series_uid: DICOM SeriesInstanceUID when a folder holds several series.
        resample_nonuniform: DICOM only; interpolate unevenly spaced slices onto a uniform
            grid instead of raising.

    Returns:
        A :class:`Volume`; ``meta`` records the format, how intensities were handled
        (``meta["hu"]``) and, for DICOM, the series.

    Raises:
        VolumeReadError: missing, unreadable, truncated or unsupported file; 4D without
            ``frame``; non-integer label values. The message names the file.
        DicomSeriesError: ambiguous or inconsistent DICOM series.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder")
    kind = file_format(path)
    if kind == "dicom":
        volume = read_dicom_series(path, series_uid=series_uid, resample_nonuniform=resample_nonuniform)
    elif kind == "nifti":
        volume = _read_nifti(path, frame)
    else:
        volume = _read_itk(path, frame)

    if label:
        volume.array = as_label_array(volume.array, volume.name)
        volume.meta["kind"] = "label"
        return volume
    is_ct = ct
    if is_ct is None:
        modality = str(volume.meta.get("modality", "")).upper()
        is_ct = modality == "CT" or (modality == "" and looks_like_hu(volume.array))
    if is_ct:
        volume.array, hu_info = to_hounsfield(
            volume.array, source=volume.name, air_floor_hu=air_floor_hu, clip_hu=clip_hu, check=True
        )
        volume.meta["hu"] = hu_info
    elif clip_hu is not None:
        raise VolumeReadError(f"{volume.name}: clip_hu was given but the volume is not CT (pass ct=True to force)")
    volume.meta["kind"] = "ct" if is_ct else "image"
    return volume


def load_image_and_label(
    image_path: str | Path, label_path: str | Path, atol_mm: float = 1e-3, **kwargs: Any
) -> tuple[Volume, Volume]:
    """Load an image and its label map and check they share a voxel grid (raises :class:`GeometryError`)."""
    image = load_volume(image_path, **kwargs)
    label = load_volume(label_path, label=True, series_uid=kwargs.get("series_uid"))
    check_same_grid(image, label, atol_mm, ("image", "label"))
    return image, label


def _read_nifti(path: Path, frame: int | None) -> Volume:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise VolumeReadError(f"{path}: not a NIfTI file ({type(image).__name__})")
        header = image.header
        slope, inter = image.dataobj.slope, image.dataobj.inter
        scaled = nifti_is_scaled(slope, inter)
        raw = (
            np.asanyarray(image.dataobj.get_unscaled())
            if hasattr(image.dataobj, "get_unscaled")
            else np.asanyarray(image.dataobj)
        )
        raw = np.asarray(raw)
    except VolumeReadError:
        raise
    except Exception as exc:  # nibabel raises many types for truncated/corrupt files
        raise VolumeReadError(f"{path}: unreadable or truncated NIfTI file ({type(exc).__name__}: {exc})") from None
    array = _take_3d(raw, path, frame)
    if scaled:
        if float(slope).is_integer() and float(inter).is_integer() and np.issubdtype(array.dtype, np.integer):
            array = _compact_int(array.astype(np.int64) * int(slope) + int(inter))
        else:
            array = array.astype(np.float32) * np.float32(slope) + np.float32(inter)
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    affine = np.asarray(image.affine, dtype=np.float64)
    sform, qform = image.get_sform(coded=True), image.get_qform(coded=True)
    if sform[0] is not None and qform[0] is not None and np.abs(sform[0] - qform[0]).max() > 1e-3:
        log.warning("%s: qform and sform disagree; medseg uses the sform (as nibabel does)", path)
    meta = {
        "format": "nifti",
        "scl_slope": float(slope) if slope is not None else 1.0,
        "scl_inter": float(inter) if inter is not None else 0.0,
        "rescale_applied_by": "medseg (nibabel scaling)" if scaled else "none",
        "on_disk_dtype": str(header.get_data_dtype()),
    }
    return Volume(array, affine, str(path), meta)  # NIfTI is stored Fortran-order: keep it, no copy


def _read_itk(path: Path, frame: int | None) -> Volume:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise VolumeReadError(f"{path}: unreadable or truncated file ({str(exc).strip().splitlines()[-1]})") from None
    require_scalar(image.GetNumberOfComponentsPerPixel(), path)
    dim = image.GetDimension()
    array = sitk.GetArrayFromImage(image).transpose(tuple(range(dim))[::-1])  # -> [i, j, k(, t)]
    array = _take_3d(array, path, frame)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    meta = {
        "format": "nrrd" if path.name.lower().endswith((".nrrd", ".nhdr")) else "metaimage",
        "rescale_applied_by": "none",
    }
    return Volume(array, affine_from_sitk(image), str(path), meta)


def require_scalar(components_per_voxel: int, path: Path) -> None:
    """Raise :class:`VolumeReadError` naming ``path`` unless a file has one component per voxel."""
    if components_per_voxel != 1:
        raise VolumeReadError(
            f"{path}: has {components_per_voxel} components per voxel (vector/RGB); medseg needs scalar 3D volumes"
        )


def nifti_is_scaled(slope: float | None, inter: float | None) -> bool:
    """True when NIfTI ``scl_slope``/``scl_inter`` change the stored values (``None`` = absent, as nibabel reports)."""
    return not (slope in (None, 1.0) and inter in (None, 0.0))


def _take_3d(array: np.ndarray, path: Path, frame: int | None) -> np.ndarray:
    """Make an array 3D: 2D gets a slice axis; trailing singleton axes are dropped; 4D needs ``frame``."""
    if array.ndim == 2:
        return array[:, :, None]
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3:
        if frame not in (None, 0):
            raise VolumeReadError(f"{path}: is 3D; frame={frame} does not exist")
        return array
    if array.ndim == 4:
        if frame is None:
            raise VolumeReadError(
                f"{path}: is 4D with shape {array.shape} (e.g. a time series or several channels); "
                f"a 3D volume is needed: pass frame=0..{array.shape[3] - 1} (Python; `medseg inspect`, `convert` and "
                f"`segment` take --frame), or extract one first: medseg convert {path.name} OUT.nii.gz --frame N"
            )
        if not 0 <= frame < array.shape[3]:
            raise VolumeReadError(f"{path}: frame {frame} out of range 0..{array.shape[3] - 1}")
        return array[..., frame]
    raise VolumeReadError(f"{path}: has {array.ndim} dimensions {array.shape}; medseg reads 3D volumes")


def _compact_int(array: np.ndarray) -> np.ndarray:
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
            return array.astype(dtype)
    return array


def as_label_array(array: np.ndarray, source: str) -> np.ndarray:
    """Validate and cast a label map to uint8 (or uint16 when labels exceed 255).

    uint8/uint16 arrays pass untouched (no copy); bool, other integer and whole-valued float
    arrays are cast; anything else (non-integer floats, negative values, values above 65535,
    non-numeric types) raises :class:`VolumeReadError` naming ``source``. Empty: uint8.
    """
    if array.dtype in (np.uint8, np.uint16):
        return array
    if array.size == 0:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise VolumeReadError(f"{source}: label map has non-integer values (is this an image, not a label map?)")
    elif not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise VolumeReadError(f"{source}: label map has data type {array.dtype}; expected integers")
    low, high = array.min(), array.max()
    if low < 0:
        raise VolumeReadError(f"{source}: label map has negative values (min {low})")
    if high > 65535:
        raise VolumeReadError(f"{source}: label values up to {high} do not fit in uint16")
    return array.astype(np.uint8 if high <= 255 else np.uint16, copy=False)


def label_dtype(array: np.ndarray) -> np.dtype:
    """uint8 when every label fits in 0..255, else uint16."""
    return np.dtype(np.uint8 if array.size == 0 or array.max() <= 255 else np.uint16)


def save_volume(volume: Volume, path: str | Path, *, label: bool | None = None) -> Path:
    """Write a volume; NIfTI-1 for ``.nii``/``.nii.gz``, SimpleITK for ``.nrrd``/``.mha``/``.mhd``.

    The write is atomic (:func:`medseg.io.atomic.atomic_path`: a temporary file renamed into
    place, permissions 0666 minus the umask), so an interrupted run never leaves a half-written
    file; ``.mhd``/``.nhdr`` write a header and a data file, moved into place data first, header
    last. Missing parent folders are created. Label maps (``label=True``, or
    ``volume.meta["kind"] == "label"`` when ``label`` is None) are written as uint8 (uint16
    above 255) after checking the values are whole and non-negative. NIfTI gets identical
    qform and sform (code 1, scanner) and mm units; the header stores the affine in float32,
    so a geometry read from a NIfTI file round-trips bit-exactly and one from DICOM to float32
    precision (< 1e-5 mm for coordinates below 256 mm).

    Returns the path written.
    """
    path = Path(path).expanduser()
    if label is None:
        label = volume.meta.get("kind") == "label"
    array = as_label_array(volume.array, volume.name) if label else volume.array
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    name = path.name.lower()
    suffix = next((s for s in NIFTI_SUFFIXES + ITK_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise VolumeReadError(f"{path}: cannot write this file type; use .nii.gz, .nii, .nrrd, .mha or .mhd")
    if suffix in DETACHED_HEADER_SUFFIXES:
        _write_detached(array, volume.affine, path)
        return path
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix in NIFTI_SUFFIXES:
            _write_nifti(array, volume.affine, str(tmp))
        else:
            _write_itk(array, volume.affine, str(tmp))
    return path


def _write_detached(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """``.mhd`` / ``.nhdr``: a header naming its data file (``.zraw``, ``.raw.gz``, ...). Both are
    written under their final names in a temporary folder beside ``path`` (the header must name
    the data file it will sit next to), then moved into place data first, header last, so the
    header never points at a missing or half-written file; on failure nothing is moved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-"))
    try:
        _write_itk(array, affine, str(folder / path.name))
        for written in sorted(folder.iterdir(), key=lambda f: f.name == path.name):  # the header last
            os.chmod(written, default_file_mode())
            os.replace(written, path.parent / written.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_nifti(array: np.ndarray, affine: np.ndarray, path: str) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(array), affine)
    image.header.set_data_dtype(array.dtype)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    image.header["scl_slope"], image.header["scl_inter"] = 1.0, 0.0
    nib.save(image, path)


def _write_itk(array: np.ndarray, affine: np.ndarray, path: str) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    spacing, origin, direction = itk_geometry_from_affine(affine)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, path, useCompression=True)
