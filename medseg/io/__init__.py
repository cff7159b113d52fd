"""Files and geometry: read and write volumes, DICOM series, Hounsfield units.

See :mod:`medseg.io.volume` for the axis and coordinate convention used everywhere.
:func:`load_volume` reads everything; two faster readers do less: :func:`read_grid` (shape
and affine from the header alone) and :func:`read_label_map` (label maps, NIfTI viewed in place).
:func:`atomic_path` / :func:`atomic_write_text` / :func:`atomic_save_npy` replace a file atomically with the usual
permissions; :func:`atomic_directory` does the same for a whole folder.
"""

from medseg.io.atomic import (
    atomic_directory,
    atomic_path,
    atomic_save_npy,
    atomic_write_text,
    default_file_mode,
    ensure_writable_file,
    ensure_writable_folder,
)
from medseg.io.describe import describe_volume, looks_like_label_map
from medseg.io.dicom import find_dicom_series, read_dicom_series
from medseg.io.headers import FileGrid, read_grid
from medseg.io.hounsfield import AIR_FLOOR_HU, looks_like_hu, to_hounsfield
from medseg.io.labelmaps import read_label_map
from medseg.io.loader import (
    file_format,
    label_dtype,
    load_image_and_label,
    load_volume,
    save_volume,
)
from medseg.io.volume import Volume, check_same_grid, grid_mismatch, orientation_code, spacing_from_affine

__all__ = [
    "AIR_FLOOR_HU",
    "FileGrid",
    "Volume",
    "atomic_directory",
    "atomic_path",
    "atomic_save_npy",
    "atomic_write_text",
    "ensure_writable_file",
    "ensure_writable_folder",
    "check_same_grid",
    "default_file_mode",
    "describe_volume",
    "file_format",
    "find_dicom_series",
    "grid_mismatch",
    "label_dtype",
    "load_image_and_label",
    "load_volume",
    "looks_like_hu",
    "looks_like_label_map",
    "orientation_code",
    "read_dicom_series",
    "read_grid",
    "read_label_map",
    "save_volume",
    "spacing_from_affine",
    "to_hounsfield",
]
