"""Synthetic short-axis cine cardiac MRI (one frame, end-diastole-like) with ACDC labels.

The heart is drawn in a *heart frame* in mm: ``x``, ``y`` in the short-axis plane along the
image's array axes 0 and 1, and ``c`` along the left ventricle's long axis from the base
(``c = 0``) towards the apex. Slice ``k`` lies at ``c = c0 + k * slice_spacing``, so slice 0
is the base (widest) and the last slices reach the apex. The short-axis planes are oblique
to the scanner axes, as planned on a real scanner: the slice normal points from base to apex,
towards the patient's Left, Anterior and Inferior, and the stack's affine (RAS+, mm) carries
those oblique direction cosines.

Around the heart, a simplified thorax is drawn in patient (RAS) coordinates and cut by the
same oblique planes: chest wall, subcutaneous fat, lungs, liver and stomach below the
diaphragm, spine and descending aorta.

Signal model (bSSFP-like, arbitrary units stored as non-negative int16): blood bright, fat
bright, myocardium dark grey, liver and muscle mid grey, lungs and air dark. Each slice
averages three sub-slices across its thickness (through-plane partial volume) and is shifted
in plane by a millimetre or two (breath-hold misregistration), then an in-plane blur, a smooth
multiplicative bias field (coil sensitivity) and Rician noise are applied.

Labels (uint8, ACDC convention): 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity
(papillary muscles belong to the cavity, as in ACDC; RV myocardium is unlabelled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.io import Volume
from medseg.phantoms.shapes import (
    check_vector,
    ellipsoid_level,
    json_floats,
    phantom_volumes,
    radial_wobble,
    rotation_matrix,
    smooth_field,
    start_phantom,
    superellipse_level,
)

CARDIAC_MRI_LABELS: dict[str, int] = {"background": 0, "rv_cavity": 1, "lv_myocardium": 2, "lv_cavity": 3}

CARDIAC_MRI_DEFAULTS: dict[str, Any] = {
    "shape": (128, 128, 10),
    "spacing_mm": None,  # None: in-plane 1.4-1.6 mm, slices 8, 9 or 10 mm apart at the default shape, drawn per case
    "noise_fraction": None,  # None: Rician noise sigma 2-5 % of the blood signal, drawn per case
    "bias_strength": None,  # None: bias field up to about +-30 %, drawn per case
    "misregistration_mm": 1.0,  # standard deviation of the per-slice in-plane shift
}

#: (right, anterior, superior) -> where the LV apex lies from its base, before per-case jitter
_LONG_AXIS_RAS = np.array([-0.55, 0.45, -0.70])


@dataclass
class _Heart:
    """Per-case heart shape (mm, heart frame)."""

    endo_radius: float  # LV cavity radius at the equator
    wall_mm: float  # LV wall thickness at the equator
    equator_c: float  # where the LV is widest (near the base)
    endo_length: float  # base plane to the endocardial apex
    epi_length: float  # base plane to the epicardial apex
    tilt: np.ndarray  # LV axis drift in plane per mm along c
    ellipticity: float
    ellipse_angle: float
    trabeculae: np.ndarray  # wobble amplitudes and phases of the endocardium
    rv_angle: float  # direction of the RV from the LV centre, in the image plane (rad)
    ra_angle: float  # direction of the right atrium (unlabelled bright blood beside the RV)
    ra_radius: float
    rv_width: float  # RV cavity thickness at the base
    rv_span: float  # RV half-span across its direction at the base
    rv_length: float  # RV ends this far from the base (before the apex)
    rv_wall_mm: float
    papillary_angles: np.ndarray
    papillary_radius: float
    fat_mm: float


def make_cardiac_mri(seed: int, **options: Any) -> tuple[Volume, Volume]:
    """A synthetic short-axis cardiac MRI stack and its ACDC-style labels, from ``seed``.

    Args:
        seed: non-negative integer; every random choice comes from ``numpy.random.default_rng(seed)``.
        **options: ``shape`` (voxels: in-plane, in-plane, slices; default ``(128, 128, 10)``),
            ``spacing_mm`` (three floats; default drawn per case: 1.4-1.6 mm in plane, 8, 9
            or 10 mm between slices at the default shape, scaled by ``default / shape`` for
            other shapes so the field of view and base-to-apex coverage stay the same),
            ``noise_fraction`` (Rician sigma over the blood
            signal, default 0.02-0.05), ``bias_strength`` (default 0.1-0.3),
            ``misregistration_mm`` (per-slice in-plane shift, default 1.0 mm standard
            deviation). Unknown names raise :class:`~medseg.errors.ConfigError`.

    Returns:
        ``(image, label)``: non-negative int16 signal and uint8 labels (1 RV cavity, 2 LV
        myocardium, 3 LV cavity) on the same oblique grid (RAS+ affine in mm; array axis 2
        runs from the base, slice 0, to the apex). ``image.meta["phantom"]`` records the
        drawn parameters, including ``base_slice`` and ``apex_slice``.
    """
    opts, shape, rng = start_phantom("cardiac-mri", seed, options, CARDIAC_MRI_DEFAULTS, (32, 32, 4))

    spacing_mm = _spacing(rng, opts["spacing_mm"], shape)
    noise_fraction = float(rng.uniform(0.02, 0.05)) if opts["noise_fraction"] is None else float(opts["noise_fraction"])
    bias_strength = float(rng.uniform(0.1, 0.3)) if opts["bias_strength"] is None else float(opts["bias_strength"])
    axes = _short_axis_directions(rng)
    heart_origin = np.array(
        [rng.uniform(-40, -10), rng.uniform(-10, 30), rng.uniform(-30, 30)]
    )  # LV base centre, world
    offset_in_plane = rng.uniform(-10, 10, 2)  # heart position relative to the field of view's centre
    first_c = float(rng.uniform(0.5, 4.0))  # the base slice lies just below the base plane
    n_slices = shape[2]
    heart = _draw_heart(rng, axes, spacing_mm, n_slices, first_c)
    thorax = _Thorax.draw(rng, heart_origin)
    tissue = _tissue_signals(rng)

    affine = _affine(shape, spacing_mm, axes, heart_origin, offset_in_plane, first_c)
    shifts = rng.normal(0, float(opts["misregistration_mm"]), (n_slices, 2))
    thickness = min(spacing_mm[2], 8.0)
    signal = np.zeros(shape, dtype=np.float64)
    label = np.zeros(shape, dtype=np.uint8)
    texture = smooth_field(rng, shape, (6.0, 6.0, 0.5))
    for sub_offset in (-thickness / 3, 0.0, thickness / 3):
        x, y, c = _heart_frame(shape, spacing_mm, offset_in_plane, shifts, first_c + sub_offset)
        world = heart_origin.reshape(3, 1, 1, 1) + np.tensordot(axes, np.stack([x, y, c]), axes=1)
        sub_signal, sub_label = _render(heart, thorax, tissue, x, y, c, world, texture)
        signal += sub_signal / 3
        if sub_offset == 0.0:
            label = sub_label
    signal *= rng.normal(1.0, 0.03, n_slices)  # slice-to-slice intensity drift (separate breath-holds)
    signal = ndimage.gaussian_filter(signal, sigma=(0.5, 0.5, 0), mode="nearest")
    world_center = _voxel_world(affine, shape)
    signal *= _bias_field(rng, world_center, bias_strength)
    sigma = noise_fraction * tissue["blood"]
    noisy = np.sqrt((signal + sigma * rng.standard_normal(shape)) ** 2 + (sigma * rng.standard_normal(shape)) ** 2)
    scale = float(rng.uniform(700, 1300))
    image = np.clip(np.rint(noisy * scale), 0, np.iinfo(np.int16).max).astype(np.int16)

    lv_slices = np.flatnonzero((label == CARDIAC_MRI_LABELS["lv_myocardium"]).any(axis=(0, 1)))
    phantom = {
        "kind": "cardiac-mri",
        "seed": int(seed),
        "spacing_mm": json_floats(spacing_mm),
        "slice_thickness_mm": round(float(thickness), 3),
        "base_slice": 0,
        "apex_slice": int(lv_slices[-1]) if lv_slices.size else None,
        "noise_fraction": round(noise_fraction, 4),
        "bias_strength": round(bias_strength, 4),
        "long_axis_ras": json_floats(axes[:, 2]),
    }
    return phantom_volumes(image, label, affine, {"modality": "MR", "kind": "image"}, phantom)


def _voxel_world(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """World (RAS+, mm) position of every voxel centre, shape ``(3, *shape)``."""
    index = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return (affine[:3, :3] @ index + affine[:3, 3:4]).reshape(3, *shape)


def _spacing(rng: np.random.Generator, requested: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """Drawn spacing (always drawn, so other choices do not depend on ``requested``), or the requested one."""
    in_plane = round(float(rng.uniform(1.4, 1.6)), 3)
    slice_mm = float(rng.choice([8.0, 9.0, 10.0]))
    if requested is None:
        default_shape = np.asarray(CARDIAC_MRI_DEFAULTS["shape"], float)
        extent = np.array([in_plane, in_plane, slice_mm]) * np.maximum(default_shape - [0, 0, 1], 1)
        return extent / np.maximum(np.asarray(shape, float) - [0, 0, 1], 1)
    return check_vector("cardiac-mri", "spacing_mm", requested, positive=True)


def _short_axis_directions(rng: np.random.Generator) -> np.ndarray:
    """3 x 3 matrix whose columns are the RAS+ unit directions of array axes 0, 1, 2.

    Axis 2 is the LV long axis (base to apex) with a few degrees of per-case jitter; axis 0
    is as close as possible to the patient's Left, turned in plane by up to 15 degrees
    (planning variation); axis 1 completes a right-handed frame.
    """
    normal = _LONG_AXIS_RAS / np.linalg.norm(_LONG_AXIS_RAS)
    jitter_axis = np.cross(normal, rng.normal(size=3))
    normal = rotation_matrix(jitter_axis, np.deg2rad(rng.uniform(0, 12))) @ normal
    left = np.array([-1.0, 0.0, 0.0])
    first = left - (left @ normal) * normal
    first /= np.linalg.norm(first)
    first = rotation_matrix(normal, np.deg2rad(rng.uniform(-15, 15))) @ first
    second = np.cross(normal, first)
    return np.stack([first, second, normal], axis=1)


def _affine(
    shape: tuple[int, int, int],
    spacing_mm: np.ndarray,
    axes: np.ndarray,
    heart_origin: np.ndarray,
    offset_in_plane: np.ndarray,
    first_c: float,
) -> np.ndarray:
    """RAS+ affine: slice k at ``c = first_c + k * dz``; the heart sits ``offset_in_plane`` from the centre."""
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing_mm
    half = (np.asarray(shape[:2], float) - 1) / 2 * spacing_mm[:2]
    corner = np.array([-half[0] - offset_in_plane[0], -half[1] - offset_in_plane[1], first_c])
    affine[:3, 3] = heart_origin + axes @ corner
    return affine


def _heart_frame(
    shape: tuple[int, int, int], spacing_mm: np.ndarray, offset_in_plane: np.ndarray, shifts: np.ndarray, first_c: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heart-frame coordinates (mm) of every voxel of one sub-slice set; ``shifts`` move each slice."""
    nx, ny, nz = shape
    x = (np.arange(nx) - (nx - 1) / 2) * spacing_mm[0] - offset_in_plane[0]
    y = (np.arange(ny) - (ny - 1) / 2) * spacing_mm[1] - offset_in_plane[1]
    c = first_c + np.arange(nz) * spacing_mm[2]
    x3 = x[:, None, None] - shifts[None, None, :, 0]
    y3 = y[None, :, None] - shifts[None, None, :, 1]
    return (
        np.broadcast_to(x3, shape).copy(),
        np.broadcast_to(y3, shape).copy(),
        np.broadcast_to(c[None, None, :], shape).copy(),
    )


def _draw_heart(
    rng: np.random.Generator, axes: np.ndarray, spacing_mm: np.ndarray, n_slices: int, first_c: float
) -> _Heart:
    last_c = first_c + (n_slices - 1) * spacing_mm[2]
    wall = float(rng.uniform(7, 11))
    epi_length = last_c + float(rng.uniform(2.0, 8.0))
    apex_wall = float(rng.uniform(5, 8))
    # the RV lies towards the patient's right and front: project that onto the image plane
    towards_rv = np.array([0.75, 0.66, 0.0]) @ axes[:, :2]
    rv_angle = float(np.arctan2(towards_rv[1], towards_rv[0]) + np.deg2rad(rng.uniform(-15, 15)))
    towards_ra = np.array([1.0, -0.35, 0.2]) @ axes[:, :2]
    ra_angle = float(np.arctan2(towards_ra[1], towards_ra[0]) + np.deg2rad(rng.uniform(-10, 10)))
    endo_length = epi_length - apex_wall
    return _Heart(
        endo_radius=float(rng.uniform(20, 27)),
        wall_mm=wall,
        equator_c=float(rng.uniform(-2, 8)),
        endo_length=endo_length,
        epi_length=epi_length,
        tilt=rng.normal(0, 0.06, 2),
        ellipticity=float(rng.uniform(0, 0.07)),
        ellipse_angle=float(rng.uniform(0, np.pi)),
        trabeculae=np.stack([rng.normal(0, 0.025, 6), rng.uniform(0, 2 * np.pi, 6)]),
        rv_angle=rv_angle,
        ra_angle=ra_angle,
        ra_radius=float(rng.uniform(16, 22)),
        rv_width=float(rng.uniform(15, 25)),
        rv_span=float(rng.uniform(0.95, 1.08)),
        rv_length=float(endo_length * rng.uniform(0.6, 0.78)),
        rv_wall_mm=float(rng.uniform(2.5, 4.0)),
        papillary_angles=rv_angle + np.pi + np.deg2rad(np.array([-55.0, 55.0]) + rng.uniform(-12, 12, 2)),
        papillary_radius=float(rng.uniform(3.0, 4.5)),
        fat_mm=float(rng.uniform(2, 6)),
    )


def _profile(c: np.ndarray, radius: float, equator_c: float, length: float) -> np.ndarray:
    """Radius (mm) of a truncated prolate ellipsoid at ``c``: ``radius`` above the equator, 0 beyond ``length``."""
    t = np.clip((c - equator_c) / max(length - equator_c, 1e-6), 0, None)
    return radius * np.sqrt(np.clip(1 - t**2, 0, 1))


def _tissue_signals(rng: np.random.Generator) -> dict[str, float]:
    """bSSFP-like relative signals, jittered per case."""
    jitter = lambda low, high: float(rng.uniform(low, high))  # noqa: E731
    return {
        "blood": jitter(0.9, 1.1),
        "myocardium": jitter(0.28, 0.4),
        "fat": jitter(0.75, 0.95),
        "muscle": jitter(0.22, 0.3),
        "liver": jitter(0.32, 0.42),
        "spleen": jitter(0.42, 0.52),
        "stomach": jitter(0.5, 0.7),
        "lung": jitter(0.03, 0.07),
        "mediastinum": jitter(0.4, 0.55),
        "marrow": jitter(0.45, 0.6),
        "csf": jitter(0.85, 1.0),
    }


@dataclass
class _Thorax:
    """Patient anatomy around the heart (mm, RAS axes centred on the thorax)."""

    center: np.ndarray
    half_width: float
    half_depth: float
    fat_mm: float
    cavity_half_width: float
    cavity_half_depth: float
    cavity_center_v: float
    dome_right_w: float
    dome_left_w: float
    vertebra_v: float

    @classmethod
    def draw(cls, rng: np.random.Generator, heart_origin: np.ndarray) -> _Thorax:
        half_width, half_depth = float(rng.uniform(140, 165)), float(rng.uniform(95, 115))
        center = heart_origin + np.array([rng.uniform(20, 32), -rng.uniform(5, 15), 0.0])
        cavity_half_depth = half_depth - 30.0
        return cls(
            center=center,
            half_width=half_width,
            half_depth=half_depth,
            fat_mm=float(rng.uniform(8, 20)),
            cavity_half_width=half_width - 25.0,
            cavity_half_depth=cavity_half_depth,
            cavity_center_v=8.0,
            dome_right_w=float(rng.uniform(-40, -25)),
            dome_left_w=float(rng.uniform(-55, -40)),
            vertebra_v=8.0 - cavity_half_depth + 12.0,
        )

    def diaphragm_w(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        a, b = self.cavity_half_width, self.cavity_half_depth
        domes = []
        for side, dome in ((1.0, self.dome_right_w), (-1.0, self.dome_left_w)):
            fall = ((u - side * 0.4 * a) / (0.75 * a)) ** 2 + ((v - self.cavity_center_v - 10) / b) ** 2
            domes.append(dome - 40.0 * fall)
        return np.maximum(domes[0], domes[1])


def _render(
    heart: _Heart,
    thorax: _Thorax,
    tissue: dict[str, float],
    x: np.ndarray,
    y: np.ndarray,
    c: np.ndarray,
    world: np.ndarray,
    texture: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Signal and labels of one set of sample positions (heart frame x, y, c and world points)."""
    signal = np.zeros(x.shape, dtype=np.float64)
    anat = world - thorax.center.reshape(3, 1, 1, 1)
    u, v, w = anat

    # thorax: body, subcutaneous fat, chest wall muscle, cavity contents
    body = superellipse_level(u, v, thorax.half_width, thorax.half_depth, 2.4) < 1.0
    signal[body] = tissue["fat"]
    muscle = superellipse_level(u, v, thorax.half_width - thorax.fat_mm, thorax.half_depth - thorax.fat_mm, 2.4) < 1.0
    signal[muscle] = tissue["muscle"]
    cavity = (
        superellipse_level(u, v - thorax.cavity_center_v, thorax.cavity_half_width, thorax.cavity_half_depth, 2.3) < 1.0
    )
    diaphragm = thorax.diaphragm_w(u, v)
    signal[cavity] = tissue["mediastinum"] + 0.12 * texture[cavity]
    below = cavity & (w <= diaphragm)
    signal[below] = tissue["liver"] + 0.03 * texture[below]
    spleen_center = np.array(
        [-0.68 * thorax.cavity_half_width, 8.0 - 0.45 * thorax.cavity_half_depth, thorax.dome_left_w - 30]
    )
    spleen = below & (ellipsoid_level(anat, spleen_center, np.eye(3), np.array([24.0, 38, 42])) < 1.0)
    signal[spleen] = tissue["spleen"]
    stomach_center = np.array([-0.42 * thorax.cavity_half_width, 25.0, thorax.dome_left_w - 30])
    stomach = below & (ellipsoid_level(anat, stomach_center, np.eye(3), np.array([40.0, 32, 36])) < 1.0)
    signal[stomach] = tissue["stomach"]

    # spine, spinal canal and the descending aorta
    vertebra = superellipse_level(u, v - thorax.vertebra_v, 19.0, 16.0, 2.2) < 1.0
    signal[vertebra] = tissue["marrow"]
    canal = np.hypot(u, v - thorax.vertebra_v + 25.0) < 8.0
    signal[canal] = tissue["csf"]
    aorta = np.hypot(u + 22.0, v - thorax.vertebra_v - 24.0) < 11.0
    signal[aorta & (w > diaphragm - 40)] = tissue["blood"]

    # the heart, in its own frame
    shapes = _heart_shapes(heart, x, y, c)
    lungs = cavity & (w > diaphragm) & (np.abs(u) > 18.0) & ~shapes["keepout"] & ~vertebra & ~aorta
    signal[lungs] = tissue["lung"] + 0.02 * texture[lungs]
    patchy_fat = shapes["fat"] & (texture > -0.4)
    signal[patchy_fat] = tissue["fat"] * (0.85 + 0.15 * texture[patchy_fat].clip(-1, 1))
    signal[shapes["above_base"]] = tissue["blood"] * 0.9
    signal[shapes["ra_wall"]] = tissue["myocardium"]
    signal[shapes["right_atrium"]] = tissue["blood"] * (1.0 + 0.04 * texture[shapes["right_atrium"]])
    signal[shapes["rv_wall"]] = tissue["myocardium"]
    signal[shapes["myocardium"]] = tissue["myocardium"] + 0.02 * texture[shapes["myocardium"]]
    blood = shapes["lv_cavity"] | shapes["rv_cavity"]
    signal[blood] = tissue["blood"] * (1.0 + 0.04 * texture[blood])
    signal[shapes["papillary"]] = tissue["myocardium"] * 1.1

    label = np.zeros(x.shape, dtype=np.uint8)
    label[shapes["rv_cavity"]] = CARDIAC_MRI_LABELS["rv_cavity"]
    label[shapes["myocardium"]] = CARDIAC_MRI_LABELS["lv_myocardium"]
    label[shapes["lv_cavity"] | shapes["papillary"]] = CARDIAC_MRI_LABELS["lv_cavity"]
    return signal, label


def _heart_shapes(heart: _Heart, x: np.ndarray, y: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the heart's parts at heart-frame points (x, y, c in mm)."""
    xl = x - heart.tilt[0] * c
    yl = y - heart.tilt[1] * c
    radius = np.hypot(xl, yl)
    angle = np.arctan2(yl, xl)
    below_base = c >= 0
    stretch = 1 + heart.ellipticity * np.cos(2 * (angle - heart.ellipse_angle))
    endo_r = _profile(c, heart.endo_radius, heart.equator_c, heart.endo_length) * stretch
    endo_r = endo_r * radial_wobble(angle + 0.02 * c, *heart.trabeculae, first_order=4)
    epi_r = _profile(c, heart.endo_radius + heart.wall_mm, heart.equator_c, heart.epi_length) * stretch
    epi = below_base & (radius < epi_r)
    lv_cavity = below_base & (radius < endo_r)
    myocardium = epi & ~lv_cavity

    # papillary muscles: two small discs on the wall, mid-ventricle
    papillary = np.zeros_like(epi)
    middle = (c > 0.2 * heart.endo_length) & (c < 0.72 * heart.endo_length)
    for theta in heart.papillary_angles:
        reach = endo_r - heart.papillary_radius * 0.9
        papillary |= middle & (
            np.hypot(xl - reach * np.cos(theta), yl - reach * np.sin(theta)) < heart.papillary_radius
        )
    papillary &= lv_cavity

    # RV: a crescent on the LV's septal side, shrinking towards the apex and gone before it
    epi_base = heart.endo_radius + heart.wall_mm
    taper = np.sqrt(np.clip(1 - (np.clip(c, 0, None) / heart.rv_length) ** 2, 0, 1))
    along = xl * np.cos(heart.rv_angle) + yl * np.sin(heart.rv_angle)
    across = -xl * np.sin(heart.rv_angle) + yl * np.cos(heart.rv_angle)
    centre = 0.3 * epi_r
    half_along = 0.7 * epi_r + heart.rv_width * taper
    half_across = heart.rv_span * epi_base * np.sqrt(taper)
    rv_outer = superellipse_level(along - centre, across, half_along, half_across, 2.0)
    rv_cavity = below_base & (taper > 0.05) & (rv_outer < 1.0) & ~epi
    rv_wall = (
        below_base
        & (taper > 0.05)
        & (
            superellipse_level(
                along - centre, across, half_along + heart.rv_wall_mm, half_across + heart.rv_wall_mm, 2.0
            )
            < 1.0
        )
        & ~epi
        & ~rv_cavity
    )

    heart_all = epi | rv_cavity | rv_wall
    grown = (radius < epi_r + heart.fat_mm) | (
        (taper > 0.05)
        & (
            superellipse_level(
                along - centre, across, half_along + heart.fat_mm + 3, half_across + heart.fat_mm + 3, 2.0
            )
            < 1.0
        )
    )
    fat = below_base & grown & ~heart_all & (c < heart.epi_length + heart.fat_mm)
    above_base = (c < 0) & (radius < epi_base * 1.05)
    # right atrium: bright blood beside the RV near the base (unlabelled, like the RV in intensity)
    ra_distance = epi_base + heart.rv_width + heart.ra_radius * 0.6
    ra_level = np.hypot(xl - ra_distance * np.cos(heart.ra_angle), yl - ra_distance * np.sin(heart.ra_angle))
    ra_radius = heart.ra_radius * np.sqrt(np.clip(1 - (np.clip(c, 0, None) / 30.0) ** 2, 0, 1))
    right_atrium = (ra_level < ra_radius) & ~heart_all
    ra_wall = (ra_level < ra_radius + 2.5) & ~heart_all & ~right_atrium
    keepout = (
        (below_base & (radius < epi_r + heart.fat_mm + 2) & (c < heart.epi_length + 4))
        | fat
        | heart_all
        | ((c < 0) & (radius < epi_base * 1.6))
        | (ra_level < ra_radius + 4)
    )
    return {
        "lv_cavity": lv_cavity & ~papillary,
        "papillary": papillary,
        "myocardium": myocardium,
        "rv_cavity": rv_cavity,
        "rv_wall": rv_wall,
        "fat": fat & ~right_atrium & ~ra_wall,
        "above_base": above_base,
        "right_atrium": right_atrium,
        "ra_wall": ra_wall,
        "keepout": keepout,
    }


def _bias_field(rng: np.random.Generator, world: np.ndarray, strength: float) -> np.ndarray:
    """Smooth multiplicative coil-sensitivity field ``exp(linear + quadratic)`` over the grid."""
    centre = world.reshape(3, -1).mean(axis=1).reshape(3, 1, 1, 1)
    relative = (world - centre) / 100.0
    gradient = rng.normal(0, 1, 3)
    gradient *= strength / max(np.linalg.norm(gradient), 1e-6)
    log_field = np.tensordot(gradient, relative, axes=1) - strength * 0.5 * float(rng.uniform(0, 1)) * (
        relative**2
    ).sum(axis=0)
    return np.exp(log_field)


__all__ = ["CARDIAC_MRI_LABELS", "make_cardiac_mri"]
