"""Training-free lung mask from a chest CT in Hounsfield units: label 1 left lung, 2 right lung.

Pipeline (each step names the library that does the work):

1. **Air**: voxels below ``air_threshold_hu`` (default -320 HU; ``"otsu"`` takes the
   SimpleITK Otsu threshold of the volume clipped to [-1024, 200] HU).
2. **Body**: the largest 3D connected component of non-air (the patient, without a separate
   table) with its holes filled slice by slice; air outside it (around the patient, in the
   table, connected to the array border) is dropped. ``scipy.ndimage.label``.
3. **Trachea and main bronchi** (``scipy.ndimage`` per slice): the trachea is the largest
   air component of 40-800 mm^2 within 35 mm of the body's left-right middle in the most
   superior slice that has one; it is tracked slice by slice down (and up) through air
   components that touch it and are at most 2.5 times larger. Where the airway touches lung
   in a slice (one big component), it is cut loose by eroding 1-3 pixels (the thin
   partial-volume wall is what joins them) or, failing that, taken as the lumen below
   ``airway_hu``. Below the carina (first slice with two separate branches) a branch stops
   when it has entered the lung (mostly air in a ring 2-5 mm around it), and everything stops
   ``bronchus_depth_mm`` below the carina. A find tracked over less than 30 mm is not a
   trachea (oesophageal or bowel gas) and the search goes on. The airway plus a rim of
   ``airway_rim_mm`` (its partial-volume wall) is removed, which disconnects the lungs from
   each other through the airways.
4. **Two lungs**: 3D components (face connectivity) of the remaining air, without gas
   pockets (components mostly below ``airway_hu``: bowel gas, air in the table; lung
   parenchyma is about -850 HU); the largest is one lung and the largest one whose centre
   lies on the other side of the body's midline is the other. If the largest spans both
   sides (lungs touching at a junction line), it is split at its thinnest junction: cores
   from thresholding the Euclidean distance map (``scipy.ndimage.distance_transform_edt``,
   in mm, on a grid pooled to ~1.5 mm) at the smallest depth that separates two large parts,
   then a marker-controlled watershed on the distance map (SimpleITK
   ``MorphologicalWatershedFromMarkers``) assigns every voxel.
5. **Left or right from the affine**: the lung whose centroid has the smaller RAS+ world x
   (towards the patient's left) gets label 1, the other label 2. Array order is never used,
   so LPS (DICOM) and RAS (NIfTI) grids give the same anatomy.
6. **Clean-up**, per lung in its bounding box: binary closing with a ball of
   ``closing_radius_mm`` (SimpleITK ``BinaryMorphologicalClosing``), holes filled in each
   axial slice (vessels, airway walls inside the lung) and in 3D, then the largest
   face-connected piece of each lung is kept (``scipy.ndimage``).

Axial slices are the array axis closest to the world superior axis, whatever the file's
axis order. About 3-5 s for a 512 x 512 x 133 CT (LIDC-IDRI-0001: 1.78 l left, 2.01 l right).

Limits: lungs that touch the in-plane border of the array (a field of view cropped inside
the chest) count as outside air and are lost; severe emphysema (more than half of a lung
below ``airway_hu``) would be taken for a gas pocket; juxta-pleural nodules larger than the
closing ball stay outside the mask.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseg.classical._common import ImageInput, as_volume, finite_values, label_output, positive_float
from medseg.errors import ConfigError
from medseg.io import Volume, looks_like_hu, spacing_from_affine
from medseg.io.itk_bridge import from_sitk, itk_order, to_sitk

log = logging.getLogger(__name__)

LEFT_LUNG, RIGHT_LUNG = 1, 2

#: trachea cross-section accepted as the start of the airway tree (mm^2): diameters ~7-32 mm
TRACHEA_AREA_MM2 = (40.0, 800.0)
#: the trachea is looked for in the upper TRACHEA_SEARCH_MM of the air inside the body, and must be
#: tracked over at least MIN_TRACHEA_MM (top to carina) to count
TRACHEA_SEARCH_MM = 80.0
MIN_TRACHEA_MM = 30.0
#: farthest the trachea may lie from the body's left-right middle (mm)
TRACHEA_OFFSET_MM = 35.0
#: airway components larger than this (mm^2) in a slice are lung, not airway
MAX_AIRWAY_AREA_MM2 = 800.0
#: the tracking window: the previous slice's airway widened by this (mm); larger pieces are lung
WINDOW_MARGIN_MM = 25.0
#: below the carina a bronchus whose surroundings (a ring RING_MM from it) are mostly air is in the lung
RING_MM = (2.0, 5.0)
INTRAPULMONARY_AIR_FRACTION = 0.5
#: air components with more than this fraction below airway_hu (-950 HU) are gas pockets, not lung
MAX_GAS_FRACTION = 0.5
#: voxel size (mm) of the pooled grid on which joined lungs are split
SPLIT_VOXEL_MM = 1.5
#: a branch stops when its cross-section grows more than this factor from one slice to the next
AIRWAY_GROWTH = 2.5


@dataclass(frozen=True)
class _SliceFrame:
    """How axial slices sit in the array: ``slice_axis``, and whether index order is superior-first."""

    slice_axis: int
    superior_first: bool

    def axial(self, array: np.ndarray) -> np.ndarray:
        """A view with the slice axis last and slices ordered from superior to inferior."""
        view = np.moveaxis(array, self.slice_axis, 2)
        return view if self.superior_first else view[:, :, ::-1]


def lung_ct(
    image: ImageInput,
    *,
    air_threshold_hu: float | str = -320.0,
    airway_hu: float = -950.0,
    remove_airways: bool = True,
    bronchus_depth_mm: float = 40.0,
    airway_rim_mm: float = 2.0,
    closing_radius_mm: float = 3.0,
    min_lung_ml: float = 20.0,
    spacing_mm: Sequence[float] | None = None,
) -> Volume:
    """Left and right lung mask from a chest CT in HU, with no training (see the module docstring).

    Args:
        image: CT Volume in Hounsfield units (as :func:`medseg.io.load_volume` returns it) or
            a 3D HU array ``[i, j, k]`` with ``spacing_mm``; a bare array is taken as RAS
            (axis 0 towards the patient's right, 2 superior), so pass a Volume whenever the
            orientation is known: left and right come from the affine.
        air_threshold_hu: air/tissue threshold in HU, or ``"otsu"``.
        airway_hu: airway lumen threshold (HU), used where an airway touches lung in a slice;
            air components mostly below it are gas pockets, not lung.
        remove_airways: find and remove the trachea and main bronchi.
        bronchus_depth_mm: how far below the carina (along the body axis) airways are removed.
        airway_rim_mm: air within this in-plane distance of the tracked lumen is removed too.
        closing_radius_mm: radius of the closing ball (mm); 0 skips the closing.
        min_lung_ml: air components smaller than this are never taken as a lung.

    Returns:
        uint8 label map on the input grid: 0 background, 1 patient-left lung, 2 patient-right
        lung. ``meta['segmentation']`` records the threshold, lung volumes (ml), whether
        the trachea was found and removed, whether the lungs had to be split, and the time.
        When no air component of ``min_lung_ml`` exists inside the body the map is all 0;
        with only one such component on one side only that lung's label is present. Either case
        is logged as a warning and recorded in ``meta['segmentation']['lungs_missing']``
        (``["left", "right"]``, ``["left"]``, ... ; ``medseg segment`` refuses to write a map
        without any lung).

    Raises:
        ConfigError: the values do not look like CT in HU, or bad parameters.
    """
    started = time.perf_counter()
    volume = as_volume(image, spacing_mm, "lung-ct")
    hu = finite_values(volume, "lung-ct")
    if not looks_like_hu(hu):
        raise ConfigError(
            f"{volume.name}: lung-ct needs CT in Hounsfield units (air near -1000 HU); these values do not look "
            "like HU "
            f"(min {float(hu.min()):g}, max {float(hu.max()):g})"
        )
    for name, value in (
        ("bronchus_depth_mm", bronchus_depth_mm),
        ("airway_rim_mm", airway_rim_mm),
        ("closing_radius_mm", closing_radius_mm),
        ("min_lung_ml", min_lung_ml),
    ):
        positive_float(value, name, "lung-ct", allow_zero=True)
    frame = slice_frame(volume.affine)
    threshold_hu = _air_threshold(hu, volume, air_threshold_hu)
    info: dict = {"air_threshold_hu": threshold_hu, "slice_axis": frame.slice_axis}

    air = hu < threshold_hu
    body = body_mask(~air, frame)
    candidates = air & body
    midline_x = float(_centroid_world(body, volume.affine)[0]) if body.any() else 0.0
    info["midline_x_mm"] = midline_x

    if remove_airways:
        airways, airway_info = track_airways(candidates, hu, volume, frame, midline_x, bronchus_depth_mm, airway_hu)
        info.update(airway_info)
        if airways.any():
            candidates &= ~_dilate_in_plane(airways, volume, frame, airway_rim_mm)

    lungs, split_info = pick_lungs(candidates, hu, volume, midline_x, min_lung_ml, airway_hu)
    info.update(split_info)
    labels = _clean_up(lungs, volume, frame, closing_radius_mm)
    voxel_ml = volume.voxel_volume_ml
    info["lung_volume_ml"] = {
        "left": float(np.count_nonzero(labels == LEFT_LUNG) * voxel_ml),
        "right": float(np.count_nonzero(labels == RIGHT_LUNG) * voxel_ml),
    }
    info["lungs_missing"] = [side for side, ml in info["lung_volume_ml"].items() if ml == 0.0]
    if info["lungs_missing"]:
        log.warning(
            "%s: lung-ct found no %s lung (no air region of %g ml or more inside the body on that side); "
            "is this a chest CT whose field of view covers the lungs?",
            volume.name,
            " and no ".join(info["lungs_missing"]),
            min_lung_ml,
        )
    info["seconds"] = round(time.perf_counter() - started, 3)
    return label_output(
        volume, labels, "lung-ct", label_names={"left_lung": LEFT_LUNG, "right_lung": RIGHT_LUNG}, **info
    )


# -- geometry ---------------------------------------------------------------------------------


def slice_frame(affine: np.ndarray) -> _SliceFrame:
    """The array axis closest to world superior (RAS+ z), and whether its index runs superior-to-inferior."""
    direction = np.asarray(affine, dtype=np.float64)[:3, :3]
    slice_axis = int(np.argmax(np.abs(direction[2])))
    return _SliceFrame(slice_axis, superior_first=bool(direction[2, slice_axis] < 0))


def _centroid_world(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """RAS+ world position (mm) of the centroid of a non-empty mask (from its projections on each axis)."""
    counts_01 = np.count_nonzero(mask, axis=2)
    total = counts_01.sum()
    centre = (
        np.array(
            [
                np.arange(mask.shape[0]) @ counts_01.sum(axis=1),
                np.arange(mask.shape[1]) @ counts_01.sum(axis=0),
                np.arange(mask.shape[2]) @ np.count_nonzero(mask, axis=(0, 1)),
            ],
            dtype=np.float64,
        )
        / total
    )
    return affine[:3, :3] @ centre + affine[:3, 3]


def _in_plane_structure(frame: _SliceFrame, full: bool = True) -> np.ndarray:
    """3 x 3 x 3 connectivity joining voxels within an axial slice only (8- or 4-neighbour)."""
    plane = np.ones((3, 3), bool) if full else ndimage.generate_binary_structure(2, 1)
    structure = np.zeros((3, 3, 3), dtype=bool)
    index = [slice(None)] * 3
    index[frame.slice_axis] = 1
    structure[tuple(index)] = plane
    return structure


def _air_threshold(hu: np.ndarray, volume: Volume, requested: float | str) -> float:
    if isinstance(requested, str):
        if requested.lower() != "otsu":
            raise ConfigError(f"lung-ct: air_threshold_hu must be a number (HU) or 'otsu', got {requested!r}")
        import SimpleITK as sitk

        otsu_filter = sitk.OtsuThresholdImageFilter()
        otsu_filter.SetNumberOfHistogramBins(256)
        otsu_filter.Execute(sitk.GetImageFromArray(np.clip(hu, -1024, 200).astype(np.float32)))  # histogram only
        return float(otsu_filter.GetThreshold())
    value = float(requested)
    if not -1000.0 < value < 0.0:
        raise ConfigError(f"lung-ct: air_threshold_hu should lie between -1000 and 0 HU, got {requested!r}")
    return value


# -- components -------------------------------------------------------------------------------


def label_components(mask: np.ndarray, structure: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.ndimage.label`` into int64 (fast to count) and the voxel count of each label (index 0 = background)."""
    components = np.empty(mask.shape, dtype=np.int64)
    count = ndimage.label(mask, structure=structure, output=components)
    return components, np.bincount(components.ravel(), minlength=count + 1)


def _select(components: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Boolean mask of the voxels whose component is in ``labels`` (a lookup table, not ``np.isin``)."""
    table = np.zeros(n_labels + 1, dtype=bool)
    table[np.asarray(labels, dtype=np.int64)] = True
    table[0] = False
    return table[components]


def _labels_on_border(components: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Labels present on the first or last face of the array along each of ``axes``."""
    faces = [np.take(components, index, axis=axis).ravel() for axis in axes for index in (0, -1)]
    return np.unique(np.concatenate(faces))


# -- body ---------------------------------------------------------------------------------------


def body_mask(tissue: np.ndarray, frame: _SliceFrame) -> np.ndarray:
    """The largest 3D component of ``tissue`` with holes filled in each axial slice (``scipy.ndimage``).

    An empty ``tissue`` gives an empty mask.
    """
    components, sizes = label_components(tissue)
    if len(sizes) < 2:
        return np.zeros(tissue.shape, dtype=bool)
    sizes[0] = 0
    return fill_holes_slicewise(components == int(np.argmax(sizes)), frame)


def fill_holes_slicewise(mask: np.ndarray, frame: _SliceFrame) -> np.ndarray:
    """Fill holes of ``mask`` in each axial slice: background not 4-connected, in its slice, to the slice border.

    One :func:`scipy.ndimage.label` call over the volume with an in-plane structure.
    """
    background, sizes = label_components(~mask, _in_plane_structure(frame, full=False))
    in_plane_axes = [axis for axis in range(3) if axis != frame.slice_axis]
    return ~_select(background, _labels_on_border(background, in_plane_axes), len(sizes) - 1)


def fill_holes_3d(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not face-connected to the array border (one ``scipy.ndimage.label`` call)."""
    background, sizes = label_components(~mask)
    return ~_select(background, _labels_on_border(background, range(3)), len(sizes) - 1)


def _dilate_in_plane(mask: np.ndarray, volume: Volume, frame: _SliceFrame, radius_mm: float) -> np.ndarray:
    """``mask`` grown by ``radius_mm`` within each axial slice (exact Euclidean distance, in its bounding box)."""
    if radius_mm <= 0 or not mask.any():
        return mask
    spacing = volume.spacing_mm
    box = _bounding_box(mask, margin=np.ceil(radius_mm / spacing).astype(int) + 1)
    sampling = spacing.copy()
    sampling[frame.slice_axis] = 1e6  # distances never cross slices
    grown = np.zeros_like(mask)
    grown[box] = ndimage.distance_transform_edt(~mask[box], sampling=sampling) <= radius_mm
    return grown


def _bounding_box(mask: np.ndarray, margin: np.ndarray | int = 0) -> tuple[slice, slice, slice]:
    """Slices of the bounding box of a non-empty mask, widened by ``margin`` voxels per axis, clipped to the array."""
    margin = np.broadcast_to(np.asarray(margin, dtype=int), (3,))
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        box.append(
            slice(max(int(present[0]) - margin[axis], 0), min(int(present[-1]) + 1 + margin[axis], mask.shape[axis]))
        )
    return tuple(box)  # type: ignore[return-value]


# -- airways --------------------------------------------------------------------------------


def track_airways(
    air: np.ndarray,
    hu: np.ndarray,
    volume: Volume,
    frame: _SliceFrame,
    midline_x_mm: float,
    bronchus_depth_mm: float,
    airway_hu: float,
) -> tuple[np.ndarray, dict]:
    """Trachea and main bronchi, tracked slice by slice (2D ``scipy.ndimage.label`` per slice).

    The trachea is the largest air component (area 40-800 mm^2) within 35 mm of the body's
    left-right middle in the most superior slice that has one (within the upper 80 mm of
    the air), and must be tracked over at least 30 mm down to the carina; shorter finds
    (gas in the oesophagus or bowel) are discarded and the search goes on below. Each next slice takes the
    air components that touch the airway of the slice before (grown by ~3 mm) and are not
    much larger than it; where such a component is large because the airway touches lung in
    that slice, only its lumen below ``airway_hu`` is taken. A branch ends when nothing
    small enough continues it; everything ends ``bronchus_depth_mm`` below the carina (the
    first slice where the airway is two separate branches). Tracking also runs upwards from
    the first slice, into the neck.

    Args:
        air: air inside the body (array ``[i, j, k]``).
        hu: the CT in HU (same grid).
        midline_x_mm: RAS+ x of the body's left-right middle.
        bronchus_depth_mm: tracking stops this far below the carina.
        airway_hu: lumen threshold used where an airway touches lung in a slice.

    Returns:
        ``(airway mask, info)``; the mask is empty (and ``info['trachea_found']`` False)
        when no trachea is found (e.g. a scan that starts below the carina).
    """
    spacing = volume.spacing_mm
    in_plane_axes = [axis for axis in range(3) if axis != frame.slice_axis]
    pixel_mm2 = float(spacing[in_plane_axes[0]] * spacing[in_plane_axes[1]])
    slice_mm = float(spacing[frame.slice_axis])
    air_view, hu_view = frame.axial(air), frame.axial(hu)  # [a, b, s], s = 0 most superior
    airways = np.zeros(air.shape, dtype=bool)
    airway_view = frame.axial(airways)
    x_of = _world_x_of_view(volume.affine, frame, air.shape)
    reach = _disk(max(3.0, 0.6 * slice_mm), spacing[in_plane_axes])
    window_margin_px = np.ceil(WINDOW_MARGIN_MM / spacing[in_plane_axes]).astype(int)
    ring_inner, ring_outer = (_disk(radius, spacing[in_plane_axes]) for radius in RING_MM)
    tracker = _AirwayTracker(
        air_view, hu_view, airway_view, reach, pixel_mm2, airway_hu, window_margin_px, ring_inner, ring_outer
    )
    occupied = np.flatnonzero(air_view.any(axis=(0, 1)))
    search_end = int(occupied[0]) + max(1, int(round(TRACHEA_SEARCH_MM / slice_mm))) if occupied.size else 0
    from_slice = int(occupied[0]) if occupied.size else 0
    while from_slice < min(search_end, air_view.shape[2]):
        start = _find_trachea(air_view, x_of, midline_x_mm, pixel_mm2, from_slice, search_end)
        if start is None:
            break
        start_slice, trachea = start
        airway_view[:, :, start_slice] = trachea
        carina = tracker.follow(start_slice, +1, bronchus_depth_mm / slice_mm)
        tracker.follow(start_slice, -1, None)
        tracked = np.flatnonzero(airway_view.any(axis=(0, 1)))
        trachea_mm = ((carina if carina is not None else tracked[-1]) - tracked[0] + 1) * slice_mm
        if trachea_mm >= MIN_TRACHEA_MM:
            info = {
                "trachea_found": True,
                "trachea_slice": int(_original_slice(frame, start_slice, air.shape)),
                "carina_slice": None if carina is None else int(_original_slice(frame, carina, air.shape)),
                "airway_ml": float(np.count_nonzero(airways) * volume.voxel_volume_ml),
            }
            return airways, info
        airways[...] = False  # too short for a trachea (gas in the oesophagus or bowel): look further down
        from_slice = start_slice + 1
    return airways, {"trachea_found": False}


def _find_trachea(air_view: np.ndarray, x_of, midline_x_mm: float, pixel_mm2: float, first: int, end: int):
    """``(slice, 2D mask)`` of the first trachea-like air component near the midline in slices
    ``first..end-1``, or None."""
    for s in range(first, min(end, air_view.shape[2])):
        components, count = ndimage.label(air_view[:, :, s], structure=_EIGHT)
        if count == 0:
            continue
        areas = np.bincount(components.ravel())[1:] * pixel_mm2
        centres = np.array(ndimage.center_of_mass(air_view[:, :, s], components, range(1, count + 1)))
        offsets = np.abs(x_of(centres[:, 0], centres[:, 1], s) - midline_x_mm)
        valid = (areas >= TRACHEA_AREA_MM2[0]) & (areas <= TRACHEA_AREA_MM2[1]) & (offsets <= TRACHEA_OFFSET_MM)
        if valid.any():
            best = int(np.flatnonzero(valid)[np.argmax(areas[valid])]) + 1
            return s, components == best
    return None


_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class _AirwayTracker:
    """Slice-to-slice airway following on axial views ``[a, b, s]`` (see :func:`track_airways`)."""

    air_view: np.ndarray
    hu_view: np.ndarray
    airway_view: np.ndarray
    reach: np.ndarray
    pixel_mm2: float
    airway_hu: float
    window_margin_px: np.ndarray
    ring_inner: np.ndarray
    ring_outer: np.ndarray

    def follow(self, start: int, step: int, depth_below_carina_slices: float | None) -> int | None:
        """Extend the airway from slice ``start`` in direction ``step``; returns the carina slice (or None)."""
        previous = self.airway_view[:, :, start]
        carina = None
        s = start + step
        while 0 <= s < self.air_view.shape[2] and previous.any():
            if (
                carina is not None
                and depth_below_carina_slices is not None
                and abs(s - carina) > depth_below_carina_slices
            ):
                break
            box = self._box(previous)
            near = ndimage.binary_dilation(previous[box], structure=self.reach)
            limit = min(
                MAX_AIRWAY_AREA_MM2, AIRWAY_GROWTH * np.count_nonzero(previous) * self.pixel_mm2 + 4 * self.pixel_mm2
            )
            current = self._continuation(s, box, near, limit)
            if current is not None and carina is not None:
                current = self._outside_lung(current, s)
            if current is None:
                break
            self.airway_view[:, :, s] = current
            if carina is None and step > 0 and _separate_branches(current, self.reach):
                carina = s
            previous = current
            s += step
        return carina

    def _continuation(self, s: int, box: tuple[slice, slice], near: np.ndarray, limit_mm2: float) -> np.ndarray | None:
        """Air components of slice ``s`` touching ``near`` and at most ``limit_mm2``; split off lung where larger."""
        components, _ = ndimage.label(self.air_view[:, :, s], structure=_EIGHT)
        touching = np.unique(components[box][near & (components[box] > 0)])
        if touching.size == 0:
            return None
        areas = np.bincount(components.ravel()) * self.pixel_mm2
        current = _select(components, touching[areas[touching] <= limit_mm2], len(areas) - 1)
        for large in touching[areas[touching] > limit_mm2]:
            current[box] |= self._airway_part(components[box] == large, self.hu_view[:, :, s][box], near, limit_mm2)
        return current if current.any() else None

    def _airway_part(self, component: np.ndarray, hu: np.ndarray, near: np.ndarray, limit_mm2: float) -> np.ndarray:
        """The airway inside an air component that also holds lung (all within the tracking window).

        First by shape: erode by 1, 2, 3 pixels until a piece touching ``near`` comes loose from
        the rest (the thin, partial-volume airway wall is what joined them), then grow it back
        within the component. Failing that, by intensity: lumen below ``airway_hu``. Pieces
        reaching the window's edge or above ``limit_mm2`` are lung.
        """
        for radius in (1, 2, 3):
            disk = _disk_pixels(radius)
            pieces, _ = ndimage.label(ndimage.binary_erosion(component, structure=disk), structure=_EIGHT)
            found = self._small_pieces_touching(pieces, near, limit_mm2)
            if found.any():
                grown = ndimage.binary_dilation(found, structure=disk) & component
                if np.count_nonzero(grown) * self.pixel_mm2 <= limit_mm2:
                    return grown
        pieces, _ = ndimage.label(component & (hu < self.airway_hu), structure=_EIGHT)
        return self._small_pieces_touching(pieces, near, limit_mm2)

    def _small_pieces_touching(self, pieces: np.ndarray, near: np.ndarray, limit_mm2: float) -> np.ndarray:
        """Pieces touching ``near``, not touching the window's edge, each at most ``limit_mm2``."""
        touching = np.unique(pieces[near & (pieces > 0)])
        if touching.size == 0:
            return np.zeros(pieces.shape, dtype=bool)
        edge = np.unique(np.concatenate([pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]]))
        areas = np.bincount(pieces.ravel()) * self.pixel_mm2
        keep = touching[(areas[touching] <= limit_mm2) & ~np.isin(touching, edge)]
        return _select(pieces, keep, len(areas) - 1)

    def _outside_lung(self, current: np.ndarray, s: int) -> np.ndarray | None:
        """Drop airway pieces that have entered the lung: mostly air in a ring 2-5 mm around them."""
        pieces, count = ndimage.label(current, structure=_EIGHT)
        keep = np.zeros(count + 1, dtype=bool)
        for index, window in enumerate(ndimage.find_objects(pieces), start=1):
            margin = np.asarray(self.ring_outer.shape) // 2 + 1
            box = tuple(
                slice(max(w.start - m, 0), min(w.stop + m, n)) for w, m, n in zip(window, margin, current.shape)
            )
            piece = pieces[box] == index
            ring = ndimage.binary_dilation(piece, structure=self.ring_outer) & ~ndimage.binary_dilation(
                piece, structure=self.ring_inner
            )
            keep[index] = not ring.any() or np.mean(self.air_view[:, :, s][box][ring]) <= INTRAPULMONARY_AIR_FRACTION
        kept = keep[pieces]
        return kept if kept.any() else None

    def _box(self, mask: np.ndarray) -> tuple[slice, slice]:
        """In-plane bounding box of ``mask`` widened by the tracking reach (and a little more)."""
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        margin = np.asarray(self.reach.shape) // 2 + self.window_margin_px
        return (
            slice(max(int(rows[0]) - margin[0], 0), min(int(rows[-1]) + 1 + margin[0], mask.shape[0])),
            slice(max(int(cols[0]) - margin[1], 0), min(int(cols[-1]) + 1 + margin[1], mask.shape[1])),
        )


def _separate_branches(mask: np.ndarray, reach: np.ndarray) -> bool:
    """Two or more airway pieces that stay apart even after growing each by the tracking reach."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = np.pad(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], np.asarray(reach.shape)[:, None] // 2)
    _, count = ndimage.label(ndimage.binary_dilation(crop, structure=reach), structure=_EIGHT)
    return count >= 2


def _disk(radius_mm: float, spacing_mm: np.ndarray) -> np.ndarray:
    """2D elliptical structuring element of ``radius_mm`` for pixels of ``spacing_mm`` (2 values)."""
    half = np.maximum(np.floor(radius_mm / spacing_mm).astype(int), 1)
    a, b = np.ogrid[-half[0] : half[0] + 1, -half[1] : half[1] + 1]
    return (a * spacing_mm[0]) ** 2 + (b * spacing_mm[1]) ** 2 <= max(radius_mm, float(spacing_mm.max())) ** 2


def _disk_pixels(radius: int) -> np.ndarray:
    """2D disk of ``radius`` pixels (a 3 x 3 cross for 1)."""
    a, b = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return a * a + b * b <= radius * radius


def _world_x_of_view(affine: np.ndarray, frame: _SliceFrame, shape: tuple[int, ...]):
    """Function ``(a, b, s) -> RAS+ x (mm)`` for indices of :meth:`_SliceFrame.axial` views."""
    in_plane = [axis for axis in range(3) if axis != frame.slice_axis]

    def world_x(a, b, s):
        index = np.zeros((3, np.size(a)))
        index[in_plane[0]] = a
        index[in_plane[1]] = b
        index[frame.slice_axis] = _original_slice(frame, s, shape)
        return affine[0, :3] @ index + affine[0, 3]

    return world_x


def _original_slice(frame: _SliceFrame, s: int, shape: tuple[int, ...]) -> int:
    return s if frame.superior_first else shape[frame.slice_axis] - 1 - s


# -- choosing and splitting the lungs ---------------------------------------------------------------


def pick_lungs(
    candidates: np.ndarray,
    hu: np.ndarray,
    volume: Volume,
    midline_x_mm: float,
    min_lung_ml: float,
    gas_hu: float = -950.0,
) -> tuple[np.ndarray, dict]:
    """Label 1/2 map of the two lungs among the air components in ``candidates`` (see the module docstring).

    Components smaller than ``min_lung_ml``, and gas pockets (more than half their voxels
    below ``gas_hu``: bowel gas, table or clothing air; lung parenchyma holds blood and
    tissue, about -850 HU) are never lungs.
    """
    components, sizes = label_components(candidates)
    lungs = np.zeros(candidates.shape, dtype=np.uint8)
    info: dict = {"lungs_joined": False}
    sizes[0] = 0
    large = [
        int(c) for c in np.argsort(sizes)[::-1] if sizes[c] > 0 and sizes[c] * volume.voxel_volume_ml >= min_lung_ml
    ]
    if not large:
        return lungs, info
    gas_voxels = np.bincount(components[(hu < gas_hu) & (components > 0)], minlength=len(sizes))
    order = [c for c in large if gas_voxels[c] <= MAX_GAS_FRACTION * sizes[c]]
    info["gas_pockets_ml"] = float(sum(sizes[c] for c in large if c not in order) * volume.voxel_volume_ml)
    if not order:
        return lungs, info
    objects = ndimage.find_objects(components)
    pieces: list[tuple[np.ndarray, tuple[slice, ...]]] = []  # (mask within its box, box)
    largest_box = objects[order[0] - 1]
    largest = components[largest_box] == order[0]
    parts = split_joined_lungs(largest, _box_affine(volume.affine, largest_box), midline_x_mm)
    if parts is not None:
        info["lungs_joined"] = True
        pieces.extend((part, largest_box) for part in parts)
    else:
        pieces.append((largest, largest_box))
        first_side = np.sign(_centroid_world(largest, _box_affine(volume.affine, largest_box))[0] - midline_x_mm)
        for c in order[1:]:
            box = objects[c - 1]
            piece = components[box] == c
            if np.sign(_centroid_world(piece, _box_affine(volume.affine, box))[0] - midline_x_mm) != first_side:
                pieces.append((piece, box))
                break
    centres_x = [_centroid_world(piece, _box_affine(volume.affine, box))[0] for piece, box in pieces]
    if len(pieces) == 1:
        labels_in_order = [LEFT_LUNG if centres_x[0] < midline_x_mm else RIGHT_LUNG]
    else:  # RAS+: the patient's left has the smaller world x
        labels_in_order = [LEFT_LUNG, RIGHT_LUNG] if centres_x[0] < centres_x[1] else [RIGHT_LUNG, LEFT_LUNG]
    for (piece, box), label in zip(pieces, labels_in_order):
        lungs[box][piece] = label
    return lungs, info


def _box_affine(affine: np.ndarray, box: Sequence[slice], factors: np.ndarray | None = None) -> np.ndarray:
    """Affine of the sub-grid ``box`` of a grid, optionally pooled by ``factors`` voxels per axis (block centres)."""
    factors = np.ones(3) if factors is None else np.asarray(factors, dtype=np.float64)
    start = np.array([b.start or 0 for b in box], dtype=np.float64)
    sub = np.array(affine, dtype=np.float64)
    sub[:3, 3] = affine[:3, :3] @ (start + (factors - 1) / 2) + affine[:3, 3]
    sub[:3, :3] = affine[:3, :3] * factors
    return sub


def split_joined_lungs(component: np.ndarray, affine: np.ndarray, midline_x_mm: float) -> list[np.ndarray] | None:
    """Two masks if ``component`` holds both lungs joined at a junction line, else None.

    Joined means at least 20% of its voxels lie on each side of the midline (RAS+ x). The
    split runs on a grid pooled to about 1.5 mm (blocks with any voxel count): the Euclidean
    distance map in mm (SciPy) is thresholded at growing depths until two large cores on
    opposite sides of the midline come apart (the thinnest junction goes first); a
    marker-controlled watershed of the distance map (SimpleITK
    ``MorphologicalWatershedFromMarkers``) then gives every block to one core, and each
    voxel takes its block's side.

    Args:
        component: boolean mask (a bounding box of it is enough) indexed ``[i, j, k]``.
        affine: voxel-to-RAS+ affine of ``component``'s grid.
        midline_x_mm: RAS+ x of the body's left-right middle.
    """
    x_mm = affine[0, :3] @ np.array(np.nonzero(component), dtype=np.float64) + affine[0, 3]
    left_fraction = float(np.mean(x_mm < midline_x_mm))
    if min(left_fraction, 1.0 - left_fraction) < 0.2:
        return None
    spacing = spacing_from_affine(affine)
    factors = np.maximum(np.floor(SPLIT_VOXEL_MM / spacing), 1).astype(int)
    coarse = _max_pool(component, factors)
    coarse_affine = _box_affine(affine, [slice(0, n) for n in component.shape], factors)
    distance = ndimage.distance_transform_edt(np.pad(coarse, 1), sampling=spacing * factors)[1:-1, 1:-1, 1:-1]
    markers = _junction_markers(distance, coarse_affine, midline_x_mm, float((spacing * factors).min()))
    if markers is None:
        return None
    import SimpleITK as sitk

    relief = np.where(coarse, -distance, 0.0).astype(np.float32)
    flooded = sitk.MorphologicalWatershedFromMarkers(
        to_sitk(relief, coarse_affine), to_sitk(markers, coarse_affine), markWatershedLine=False, fullyConnected=False
    )
    sides = from_sitk(flooded)
    for axis, factor in enumerate(factors):
        sides = np.repeat(sides, factor, axis=axis)
    sides = sides[: component.shape[0], : component.shape[1], : component.shape[2]]
    return [component & (sides == 1), component & (sides == 2)]


def _junction_markers(
    distance: np.ndarray, affine: np.ndarray, midline_x_mm: float, first_depth_mm: float
) -> np.ndarray | None:
    """Markers 1 and 2: the two largest cores ``distance > depth`` at the smallest depth (x1.25 steps) that
    separates two parts, the smaller at least 5% of the larger, on opposite sides of the midline."""
    depth = first_depth_mm
    deepest = float(distance.max())
    while depth < deepest:
        cores, sizes = label_components(distance > depth)
        sizes[0] = 0
        if len(sizes) > 2:
            first, second = (int(c) for c in np.argsort(sizes)[::-1][:2])
            if sizes[second] >= 0.05 * sizes[first]:
                xs = [_centroid_world(cores == c, affine)[0] for c in (first, second)]
                if (xs[0] - midline_x_mm) * (xs[1] - midline_x_mm) < 0:
                    return (cores == first).astype(np.uint8) + 2 * (cores == second).astype(np.uint8)
        depth *= 1.25
    return None


def _max_pool(mask: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Blocks of ``factors`` voxels that contain any voxel of ``mask`` (a ragged last block is kept)."""
    pooled = mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8)
    for axis, factor in enumerate(factors):
        if factor > 1:
            pooled = np.maximum.reduceat(pooled, np.arange(0, pooled.shape[axis], factor), axis=axis)
    return pooled.astype(bool)


# -- clean-up ---------------------------------------------------------------------------------------


def _clean_up(lungs: np.ndarray, volume: Volume, frame: _SliceFrame, closing_radius_mm: float) -> np.ndarray:
    """Per lung: closing (SimpleITK, ball of ``closing_radius_mm``), slice-wise and 3D hole filling, then
    only its largest face-connected component is kept (SciPy)."""
    import SimpleITK as sitk

    spacing = volume.spacing_mm
    radius_voxels = np.rint(closing_radius_mm / spacing).astype(int)
    cleaned = np.zeros_like(lungs)
    for label in (LEFT_LUNG, RIGHT_LUNG):
        mask = lungs == label
        if not mask.any():
            continue
        box = _bounding_box(mask, margin=radius_voxels + 1)
        piece = mask[box]
        if closing_radius_mm > 0 and radius_voxels.any():
            closed = sitk.BinaryMorphologicalClosing(
                to_sitk(piece.astype(np.uint8), volume.affine),
                [int(r) for r in itk_order(radius_voxels)],
                sitk.sitkBall,
                1,
                True,
            )
            piece = from_sitk(closed).astype(bool) | piece
        piece = fill_holes_3d(fill_holes_slicewise(piece, frame))
        target = cleaned[box]
        target[piece & ((lungs[box] == label) | (lungs[box] == 0)) & (target == 0)] = label
    for label in (LEFT_LUNG, RIGHT_LUNG):  # stray bits (e.g. a voxel cut off by the split) are dropped
        mask = cleaned == label
        if mask.any():
            box = _bounding_box(mask)
            pieces, sizes = label_components(mask[box])
            sizes[0] = 0
            cleaned[box][(pieces > 0) & (pieces != int(np.argmax(sizes)))] = 0
    return cleaned
