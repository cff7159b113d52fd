"""Base / middle / apex regions along one array axis.

A region is a contiguous range of slices along the **region axis**. The slices that hold the
reference structure (of the anchor: the label itself, the union of all foreground, or a chosen
label) are split into three contiguous groups whose sizes differ by at most one (``n = 3q``:
``q, q, q``; ``3q + 1``: ``q, q + 1, q``, the left-over slice going to the middle;
``3q + 2``: ``q + 1, q, q + 1``). The two end groups are extended to the ends of the array, so
prediction slices beyond the reference extent fall in the nearest end region and their false
positives are counted; the three regions therefore partition the whole axis.

Region axis ``"auto"``: the axis whose spacing is clearly (more than 10 %) the largest (the
short-axis stack of cardiac MRI, the slice axis of thick-slice CT); for (near-)isotropic
volumes the array axis closest to the patient's superior-inferior direction according to the
affine (the last axis when no affine is known).

Base end ``"auto"``: the end whose group holds more reference voxels (a larger mean
cross-section: the base of the heart and of the lungs is wide, the apex narrow); ties go to
the first end. ``"first"`` / ``"last"`` force it. The choice is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from medseg.errors import InvalidArgumentError

REGION_NAMES = ("base", "middle", "apex")
#: a spacing more than this factor above every other axis's makes its axis the region axis
ANISOTROPY_RATIO = 1.1


@dataclass(frozen=True)
class RegionSplit:
    """Where base, middle and apex lie along ``axis`` (slice indices, stop exclusive).

    ``reference_first`` / ``reference_last`` are the first and last slice (inclusive) holding
    the anchor's reference structure; ``base_end`` is ``"first"`` (low indices) or ``"last"``;
    ``base_rule`` says how it was chosen (``"auto"``, ``"auto (tie)"``, ``"first"``, ``"last"``).
    Each region's range is in ``ranges`` as ``{name: (start, stop)}``; a middle region of a
    one- or two-slice structure can be empty (``start == stop``).
    """

    axis: int
    reference_first: int
    reference_last: int
    base_end: str
    base_rule: str
    ranges: dict[str, tuple[int, int]]

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable)."""
        out = asdict(self)
        out["ranges"] = {name: [int(a), int(b)] for name, (a, b) in self.ranges.items()}
        return out


def choose_region_axis(spacing_mm: np.ndarray, affine: np.ndarray | None = None, region_axis: object = "auto") -> int:
    """Array axis used for regions (and slice-wise metrics); see the module docstring.

    Args:
        spacing_mm: voxel size per array axis (mm).
        affine: voxel-to-world (RAS+) matrix, used for near-isotropic volumes; optional.
        region_axis: ``"auto"`` or ``0``, ``1``, ``2`` (also as strings).
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if str(region_axis) != "auto":
        try:
            axis = int(region_axis)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"region axis must be auto, 0, 1 or 2, got {region_axis!r}") from None
        if not 0 <= axis < spacing.size:
            raise InvalidArgumentError(f"region axis {axis} does not exist for a {spacing.size}D volume")
        return axis
    largest = int(np.argmax(spacing))
    others = np.delete(spacing, largest)
    if others.size and spacing[largest] > ANISOTROPY_RATIO * others.max():
        return largest
    if affine is not None:
        axes = np.asarray(affine, dtype=np.float64)[:3, : spacing.size]
        superior = np.abs(axes[2]) / np.maximum(np.linalg.norm(axes, axis=0), 1e-12)
        return int(np.argmax(superior))
    return spacing.size - 1


def split_regions(slice_counts: np.ndarray, base_at: str = "auto") -> RegionSplit | None:
    """Split the slices that hold a structure into base, middle and apex.

    Args:
        slice_counts: reference voxels per slice along the region axis (length = number of
            slices of the whole volume).
        base_at: ``"auto"``, ``"first"`` or ``"last"``.

    Returns:
        A :class:`RegionSplit` with ``axis=-1`` (the caller fills it in via
        :func:`dataclasses.replace`), or ``None`` when the structure is empty (no regions).
    """
    if base_at not in ("auto", "first", "last"):
        raise InvalidArgumentError(f"base_at must be auto, first or last, got {base_at!r}")
    counts = np.asarray(slice_counts)
    present = np.flatnonzero(counts)
    if present.size == 0:
        return None
    first, last = int(present[0]), int(present[-1])
    n = last - first + 1
    q, left_over = divmod(n, 3)
    sizes = {0: (q, q, q), 1: (q, q + 1, q), 2: (q + 1, q, q + 1)}[left_over]
    low_stop = first + sizes[0]
    high_start = last + 1 - sizes[2]
    if base_at == "auto":
        low_mass, high_mass = int(counts[first:low_stop].sum()), int(counts[high_start : last + 1].sum())
        base_end = "last" if high_mass > low_mass else "first"
        rule = "auto (tie)" if high_mass == low_mass else "auto"
    else:
        base_end, rule = base_at, base_at
    low, middle, high = (0, low_stop), (low_stop, high_start), (high_start, counts.size)
    ranges = (
        {"base": low, "middle": middle, "apex": high}
        if base_end == "first"
        else {"base": high, "middle": middle, "apex": low}
    )
    return RegionSplit(-1, first, last, base_end, rule, ranges)
