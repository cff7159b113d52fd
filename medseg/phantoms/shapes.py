"""Building blocks shared by the phantoms: coordinates, implicit shapes, tubes, noise.

Every phantom is drawn in millimetres in an *anatomical* frame attached to the body (or the
heart) and sampled on the voxel grid through an affine, so the anatomy never depends on the
grid's orientation or spacing. Coordinates are always passed as one array of shape
``(3, *grid_shape)`` (components first), in mm. Shapes are boolean masks or float32
occupancies in ``[0, 1]`` on that grid. All work is vectorised NumPy / SciPy
(:func:`scipy.ndimage.gaussian_filter` for blurring); the only Python loops run over tube
segments, never over voxels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.io import Volume


def rotation_matrix(axis: np.ndarray | list[float], angle_rad: float) -> np.ndarray:
    """3 x 3 rotation by ``angle_rad`` (right-hand rule) about ``axis`` (any length, not zero)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    x, y, z = axis
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return cos * np.eye(3) + sin * cross + (1 - cos) * np.outer(axis, axis)


def index_coordinates(shape: tuple[int, int, int], k_offset: float = 0.0) -> np.ndarray:
    """Voxel indices as float64 of shape ``(3, *shape)``; ``k_offset`` shifts axis 2 (sub-slices)."""
    grid = np.indices(shape, dtype=np.float64)
    grid[2] += k_offset
    return grid


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4 x 4 affine to points of shape ``(3, ...)`` (components first); same shape back."""
    flat = points.reshape(3, -1)
    out = matrix[:3, :3] @ flat + matrix[:3, 3:4]
    return out.reshape(points.shape)


def superellipse_level(
    x: np.ndarray, y: np.ndarray, a: np.ndarray | float, b: np.ndarray | float, power: float
) -> np.ndarray:
    """``(|x/a|^p + |y/b|^p)^(1/p)``: below 1 inside a superellipse with semi-axes ``a``, ``b`` (mm).

    ``power`` 2 is an ellipse; larger values are boxier. Semi-axes may be arrays that
    broadcast with ``x`` (shapes that change from slice to slice).
    """
    a = np.maximum(a, 1e-6)
    b = np.maximum(b, 1e-6)
    return (np.abs(x / a) ** power + np.abs(y / b) ** power) ** (1.0 / power)


def radial_wobble(
    angle_rad: np.ndarray, amplitudes: np.ndarray, phases: np.ndarray, first_order: int = 2
) -> np.ndarray:
    """Smooth random outline factor ``1 + sum_m a_m cos(m * angle + phi_m)`` for ``m = first_order, ...``.

    Multiplying a shape's radius by this gives per-case variation of its outline; keep the
    amplitudes small (a few percent) so the shape stays plausible.
    """
    factor = np.ones_like(angle_rad)
    for order, (amplitude, phase) in enumerate(zip(amplitudes, phases), start=first_order):
        factor = factor + amplitude * np.cos(order * angle_rad + phase)
    return factor


def smoothstep(edge0: float, edge1: float, x: np.ndarray | float) -> np.ndarray:
    """0 below ``edge0``, 1 above ``edge1``, a smooth cubic ramp between (either edge order)."""
    t = np.clip((np.asarray(x, dtype=np.float64) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def ellipsoid_level(
    coords: np.ndarray, center: np.ndarray, rotation: np.ndarray, semi_axes_mm: np.ndarray
) -> np.ndarray:
    """Normalised radius of points in a rotated ellipsoid: below 1 inside, 1 on the surface.

    ``rotation``'s columns are the ellipsoid's axes in the coordinate frame of ``coords``
    (shape ``(3, ...)``, mm); ``semi_axes_mm`` the lengths along those axes.
    """
    local = np.tensordot(rotation.T, coords - np.asarray(center, float).reshape(3, *([1] * (coords.ndim - 1))), axes=1)
    scaled = local / np.asarray(semi_axes_mm, float).reshape(3, *([1] * (coords.ndim - 1)))
    return np.sqrt((scaled**2).sum(axis=0))


class TubeCanvas:
    """Draws tubes (chains of cone segments) as partial-volume occupancy on a voxel grid.

    Args:
        coords_mm: ``(3, *shape)`` coordinates of every voxel centre in the frame the tube
            points are given in (mm).
        frame_to_index: 4 x 4 affine from that frame to voxel indices; it must be a rotation
            and translation followed by per-axis scaling (true for every grid medseg writes),
            so a sphere of radius r mm spans ``r / spacing`` voxels along each axis.
        spacing_mm: voxel size along the three array axes (mm).
        edge_mm: width of the soft edge; occupancy ramps from 1 to 0 over this distance
            around the tube surface, a simple partial-volume model.

    Each segment is evaluated only inside its bounding box, so the cost is proportional to
    the tubes' volume, not the grid's.
    """

    def __init__(
        self, coords_mm: np.ndarray, frame_to_index: np.ndarray, spacing_mm: np.ndarray, edge_mm: float
    ) -> None:
        self.coords_mm = coords_mm
        self.shape = coords_mm.shape[1:]
        self.frame_to_index = np.asarray(frame_to_index, dtype=np.float64)
        self.spacing_mm = np.asarray(spacing_mm, dtype=np.float64)
        self.edge_mm = float(edge_mm)

    def new_layer(self) -> np.ndarray:
        """An empty float32 occupancy layer on the grid."""
        return np.zeros(self.shape, dtype=np.float32)

    def draw_chain(self, layer: np.ndarray, points_mm: np.ndarray, radii_mm: np.ndarray | float) -> None:
        """Draw a polyline tube through ``points_mm`` (``(n, 3)``) into ``layer`` (max-combined).

        ``radii_mm`` is one radius or one per point (linearly interpolated along segments).
        A chain of fewer than two points draws nothing.
        """
        points_mm = np.asarray(points_mm, dtype=np.float64)
        radii = np.broadcast_to(np.asarray(radii_mm, dtype=np.float64), (len(points_mm),))
        for start in range(len(points_mm) - 1):
            self.draw_segment(layer, points_mm[start], points_mm[start + 1], radii[start], radii[start + 1])

    def draw_segment(self, layer: np.ndarray, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float) -> None:
        """Draw one cone segment from ``p0`` (radius ``r0`` mm) to ``p1`` (radius ``r1`` mm)."""
        reach = max(r0, r1) + self.edge_mm
        ends = apply_affine(self.frame_to_index, np.stack([p0, p1], axis=1))
        pad = reach / self.spacing_mm
        low = np.floor(ends.min(axis=1) - pad).astype(int)
        high = np.ceil(ends.max(axis=1) + pad).astype(int) + 1
        low = np.maximum(low, 0)
        high = np.minimum(high, self.shape)
        if np.any(high <= low):
            return
        box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
        local = self.coords_mm[(slice(None),) + box] - p0.reshape(3, 1, 1, 1)
        direction = p1 - p0
        length_sq = float(direction @ direction)
        if length_sq > 0:
            t = np.clip(np.tensordot(direction, local, axes=1) / length_sq, 0.0, 1.0)
        else:
            t = np.zeros(local.shape[1:])
        offset = local - direction.reshape(3, 1, 1, 1) * t
        distance = np.sqrt((offset**2).sum(axis=0))
        radius = r0 + (r1 - r0) * t
        occupancy = np.clip((radius - distance) / self.edge_mm + 0.5, 0.0, 1.0).astype(np.float32)
        np.maximum(layer[box], occupancy, out=layer[box])


def correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_voxels: tuple[float, ...]) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise blurred by ``sigma_voxels`` (spatially correlated).

    White noise from ``rng`` is smoothed with :func:`scipy.ndimage.gaussian_filter` (mode
    ``wrap``) and rescaled to standard deviation 1, so the amplitude the caller multiplies in
    is the actual noise level. float32, shape ``shape``.
    """
    white = rng.standard_normal(shape)
    if any(s > 0 for s in sigma_voxels):
        white = ndimage.gaussian_filter(white, sigma_voxels, mode="wrap")
    std = white.std()
    return (white / (std if std > 0 else 1.0)).astype(np.float32)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_voxels: tuple[float, ...]) -> np.ndarray:
    """A smooth random field (unit standard deviation): texture and low-frequency variation.

    Same as :func:`correlated_noise` with large ``sigma_voxels``; named separately for intent.
    """
    return correlated_noise(rng, shape, sigma_voxels)


def start_phantom(
    kind: str, seed: object, options: dict, defaults: dict, min_shape: tuple[int, int, int]
) -> tuple[dict, tuple[int, int, int], np.random.Generator]:
    """Check a generator's inputs: ``(options merged over defaults, grid shape in voxels, rng)``.

    Runs :func:`check_options`, :func:`check_shape` (on ``options["shape"]``, at least
    ``min_shape``) and :func:`check_seed`, in that order, then makes
    ``numpy.random.default_rng(seed)``, the case's only source of randomness. Raises
    :class:`ConfigError` naming ``kind``.
    """
    opts = check_options(kind, options, defaults)
    shape = check_shape(kind, opts["shape"], min_shape)
    return opts, shape, np.random.default_rng(check_seed(kind, seed))


def phantom_volumes(
    image: np.ndarray, label: np.ndarray, affine: np.ndarray, image_meta: dict, phantom: dict
) -> tuple[Volume, Volume]:
    """``(image, label)`` volumes on one grid (``affine``: RAS+, mm) sharing the ``phantom`` record.

    The image's meta is ``image_meta`` (e.g. ``{"modality": "CT", "kind": "ct"}``) plus
    ``"phantom"``; the label's is ``{"kind": "label", "phantom": phantom}``. The label gets its
    own copy of the affine.
    """
    meta = {**image_meta, "phantom": phantom}
    return Volume(image, affine, None, meta), Volume(label, affine.copy(), None, {"kind": "label", "phantom": phantom})


def check_seed(kind: str, seed: object) -> int:
    """A seed must be a non-negative integer (NumPy's requirement); raises :class:`ConfigError` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"phantom {kind}: seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_options(kind: str, options: dict, allowed: dict) -> dict:
    """Merge ``options`` over ``allowed`` defaults; unknown names raise :class:`ConfigError`."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"phantom {kind}: unknown option(s) {', '.join(unknown)}; known options: {', '.join(sorted(allowed))}"
        )
    return {**allowed, **options}


def check_shape(kind: str, shape: tuple[int, ...], minimum: tuple[int, int, int]) -> tuple[int, int, int]:
    """Validate a grid shape (three ints, each at least ``minimum``); returns it as a tuple."""
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"phantom {kind}: shape must be three integers, got {shape!r}") from None
    if len(shape) != 3 or any(n < m for n, m in zip(shape, minimum)):
        raise ConfigError(f"phantom {kind}: shape must be three integers of at least {minimum}, got {shape}")
    return shape  # type: ignore[return-value]


def check_vector(kind: str, name: str, value: object, positive: bool = False) -> np.ndarray:
    """Three finite floats (``positive``: each > 0) as a float64 array; raises :class:`ConfigError` otherwise."""
    try:
        vector = np.asarray(value, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        raise ConfigError(f"phantom {kind}: {name} must be three numbers, got {value!r}") from None
    if not np.all(np.isfinite(vector)) or (positive and np.any(vector <= 0)):
        raise ConfigError(
            f"phantom {kind}: {name} must be three finite{' positive' if positive else ''} numbers, got {value!r}"
        )
    return vector


def json_floats(values: np.ndarray | list | tuple, digits: int = 4) -> list[float]:
    """Round numbers for ``Volume.meta`` (plain JSON floats)."""
    return [round(float(v), digits) for v in np.ravel(values)]
