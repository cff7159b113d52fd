"""The :class:`Volume`: a voxel array with its geometry.

Axis and coordinate convention (used everywhere in medseg)
---------------------------------------------------------
* ``volume.array`` is indexed ``[i, j, k]`` in the order of the file's voxel axes. For
  NIfTI that is the stored order; for DICOM, NRRD and MHA (read through SimpleITK, whose
  NumPy view is ``[z, y, x]``) medseg transposes to ``[x, y, z]`` = (column, row, slice).
* ``volume.affine`` is a 4 x 4 float64 matrix that maps a voxel index ``(i, j, k, 1)`` to a
  world position in millimetres in the **RAS+** frame: +x towards the patient's Right,
  +y Anterior, +z Superior (the NIfTI / nibabel convention). DICOM and ITK use LPS+;
  medseg converts once, on reading, by negating the first two world axes.
* ``spacing_mm``, ``origin_mm`` and ``direction`` are derived from the affine, never stored
  separately, so they cannot disagree with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import GeometryError

#: Flips LPS+ world coordinates to RAS+ (and back: it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(eq=False)
class Volume:
    """A 3D voxel array with its voxel-to-world geometry.

    Attributes:
        array: voxel values, indexed ``[i, j, k]`` (see the module docstring). Readers return
            the file's memory layout without copying (NIfTI and transposed ITK/DICOM arrays are
            Fortran-ordered); use ``np.ascontiguousarray`` where C order matters.
        affine: 4 x 4 voxel-index to RAS+ world-mm matrix.
        source: the file or folder it was read from, if any (used in error messages).
        meta: free-form facts about how it was read (modality, Hounsfield handling, DICOM
            series UID, ...). Plain JSON-serialisable values only.
    """

    array: np.ndarray
    affine: np.ndarray
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise GeometryError(f"{self.name}: affine must be 4 x 4, got {self.affine.shape}")
        if self.array.ndim != 3:
            raise GeometryError(f"{self.name}: a Volume is 3D, got an array of shape {self.array.shape}")

    # -- geometry, all derived from the affine -------------------------------------------
    @property
    def name(self) -> str:
        return str(self.source) if self.source else "<in-memory volume>"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size along array axes ``(i, j, k)`` in mm (column norms of the affine)."""
        return spacing_from_affine(self.affine)

    @property
    def origin_mm(self) -> np.ndarray:
        """RAS+ world position (mm) of the centre of voxel ``(0, 0, 0)``."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3 x 3 matrix whose columns are the unit RAS+ directions of the array axes."""
        return self.affine[:3, :3] / self.spacing_mm

    @property
    def orientation(self) -> str:
        """Three-letter code of where each array axis points, e.g. ``"RAS"`` or ``"LPS"``."""
        return orientation_code(self.affine)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (cm^3)."""
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    def with_array(self, array: np.ndarray, **meta: Any) -> Volume:
        """A new Volume on the same grid holding ``array`` (which must have the same shape)."""
        if tuple(array.shape) != self.shape:
            raise GeometryError(f"{self.name}: new array shape {tuple(array.shape)} differs from the grid {self.shape}")
        return Volume(array, self.affine.copy(), self.source, {**self.meta, **meta})

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing_mm)
        return (
            f"Volume(shape={self.shape}, dtype={self.array.dtype}, spacing_mm=({spacing}), "
            f"orientation={self.orientation!r}, source={self.source!r})"
        )


def spacing_from_affine(affine: np.ndarray) -> np.ndarray:
    """Voxel size in mm along each array axis: the Euclidean norms of the affine's first 3 columns."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def orientation_code(affine: np.ndarray) -> str:
    """Orientation code of an affine, e.g. ``"RAS"``: the world direction each array axis points to."""
    import nibabel as nib

    return "".join(nib.aff2axcodes(np.asarray(affine)))


def affine_from_itk(spacing: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """RAS+ affine from ITK/SimpleITK geometry (which is LPS+, ``direction`` 3 x 3 with axis columns)."""
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) @ np.diag(spacing)
    affine_lps[:3, 3] = origin
    return LPS_TO_RAS @ affine_lps


def affine_from_sitk(image_or_reader: Any) -> np.ndarray:
    """RAS+ affine (mm) of the first three axes of a SimpleITK image or header-read ``ImageFileReader``.

    Both expose ``GetDimension``, ``GetSpacing``, ``GetOrigin`` and ``GetDirection`` (LPS+).
    A 2D image gets a third axis of 1 mm through the origin; axes beyond the third are dropped.
    """
    dim = image_or_reader.GetDimension()
    spacing = np.array(image_or_reader.GetSpacing(), float)[:3]
    origin = np.array(image_or_reader.GetOrigin(), float)[:3]
    direction = np.array(image_or_reader.GetDirection(), float).reshape(dim, dim)[:3, :3]
    if dim == 2:
        spacing, origin = np.append(spacing, 1.0), np.append(origin, 0.0)
        full = np.eye(3)
        full[:2, :2] = direction
        direction = full
    return affine_from_itk(spacing, origin, direction)


def itk_geometry_from_affine(affine: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """Inverse of :func:`affine_from_itk`: ``(spacing, origin, direction_row_major)`` in LPS+."""
    affine_lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    spacing = spacing_from_affine(affine_lps)
    direction = affine_lps[:3, :3] / spacing
    return tuple(spacing), tuple(affine_lps[:3, 3]), tuple(direction.ravel())


def grid_mismatch(
    affine_a: np.ndarray,
    shape_a: tuple[int, ...],
    affine_b: np.ndarray,
    shape_b: tuple[int, ...],
    atol_mm: float = 1e-3,
    names: tuple[str, str] = ("first", "second"),
) -> str | None:
    """Describe how two voxel grids differ, or return ``None`` when they match.

    Grids match when shapes are equal and every voxel centre lies within ``atol_mm`` of the
    other grid's (checked on the affine: origin within ``atol_mm``, and each axis vector
    scaled by the extent of the array within ``atol_mm``, so small rounding of a large
    volume's direction cosines is judged by its effect in mm). The description names each side
    with ``names`` (e.g. ``("reference", "prediction")``): ``origin: reference (0, 0, 0) mm,
    prediction (5, 0, 0) mm``. Spacing and origin are in mm, RAS+.
    """
    first, second = names
    shape_a, shape_b = tuple(shape_a), tuple(shape_b)
    if shape_a != shape_b:
        return f"shape: {first} {shape_a}, {second} {shape_b}"
    a, b = np.asarray(affine_a, float), np.asarray(affine_b, float)
    problems = []
    spacing_a, spacing_b = spacing_from_affine(a), spacing_from_affine(b)
    extent = np.maximum(np.asarray(shape_a, float) - 1, 1)
    if np.any(np.abs(spacing_a - spacing_b) * extent > atol_mm):
        problems.append(f"spacing: {first} {_fmt(spacing_a)} mm, {second} {_fmt(spacing_b)} mm")
    if np.any(np.abs(a[:3, 3] - b[:3, 3]) > atol_mm):
        problems.append(f"origin: {first} {_fmt(a[:3, 3])} mm, {second} {_fmt(b[:3, 3])} mm")
    axis_error_mm = np.abs((a[:3, :3] - b[:3, :3]) * extent).max()
    if not problems and axis_error_mm > atol_mm:
        problems.append(
            f"direction differs (orientation: {first} {orientation_code(a)}, {second} {orientation_code(b)}; "
            f"up to {axis_error_mm:.3g} mm apart at the far corner)"
        )
    return "; ".join(problems) or None


def check_same_grid(a: Volume, b: Volume, atol_mm: float = 1e-3, names: tuple[str, str] | None = None) -> None:
    """Raise :class:`GeometryError` naming both files unless ``a`` and ``b`` share a voxel grid; ``names``
    says what each is (default: their file names)."""
    names = names or (a.name or "first", b.name or "second")
    problem = grid_mismatch(a.affine, a.shape, b.affine, b.shape, atol_mm, names)
    if problem:
        raise GeometryError(f"{a.name} and {b.name} are not on the same voxel grid: {problem}")


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def as_path(path: str | Path) -> Path:
    return Path(path).expanduser()
