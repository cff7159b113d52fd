"""Synthetic chest CT: body, lungs with vessel trees, heart, great vessels, airways, spine, ribs.

The anatomy is drawn in an *anatomical* frame in mm, ``(u, v, w)`` = (towards the patient's
Right, Anterior, Superior), centred on the body, and sampled on an LPS-oriented grid (array
axis 0 towards the patient's Left, 1 Posterior, 2 Superior, like a CT converted from DICOM).
A small random roll about the long axis and a translation place the body in the scanner;
the table stays fixed in the scanner frame. The volume's affine is RAS+ as everywhere in
medseg, so the left lung (label 1) has smaller world x than the right lung (label 2).

Intensities are Hounsfield units (int16, clipped to -1024..3071): air -1000, lung about
-850 with a gravity gradient and texture, fat about -100, soft tissue +40, heart +40 with a
slightly brighter blood pool, bone +250 (cancellous) to +700 (cortex), then a Gaussian
point-spread blur (partial volume) and spatially correlated Gaussian noise.

Labels (uint8): 0 background, 1 left lung, 2 right lung, 3 heart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.io import Volume
from medseg.phantoms.shapes import (
    TubeCanvas,
    apply_affine,
    check_vector,
    correlated_noise,
    ellipsoid_level,
    index_coordinates,
    json_floats,
    phantom_volumes,
    radial_wobble,
    rotation_matrix,
    smooth_field,
    smoothstep,
    start_phantom,
    superellipse_level,
)

CT_THORAX_LABELS: dict[str, int] = {"background": 0, "left_lung": 1, "right_lung": 2, "heart": 3}

CT_THORAX_DEFAULTS: dict[str, Any] = {
    "shape": (96, 96, 40),
    "spacing_mm": None,  # None: in-plane 3.6-4.0 mm and slices 5.0/5.5/6.0 mm at the default shape, drawn per case
    "noise_hu": None,  # None: 10-25 HU, drawn per case
    "rotation_deg": None,  # None: roll about the long axis of up to +-8 degrees, drawn per case
    "translation_mm": None,  # None: up to +-12 mm in plane and +-8 mm along z, drawn per case
    "table": True,
}

AIR_HU = -1000.0
CT_MIN_HU, CT_MAX_HU = -1024, 3071


@dataclass
class _Body:
    """Per-case anatomy parameters (mm, anatomical frame; see the module docstring)."""

    half_width: float  # body semi-axis left-right
    half_depth: float  # body semi-axis anterior-posterior
    fat_lateral: float
    fat_anterior: float
    fat_posterior: float
    cavity_center_v: float
    cavity_half_width: float
    cavity_half_depth: float
    dome_right_w: float
    dome_left_w: float
    apex_w: float
    hilum_w: float
    carina_w: float
    vertebra_v: float
    outline_wobble: np.ndarray  # amplitudes, phases (2 x 3)
    cavity_wobble: np.ndarray


def make_ct_thorax(seed: int, **options: Any) -> tuple[Volume, Volume]:
    """A synthetic chest CT and its label map, drawn from ``seed`` (same seed, same arrays).

    Args:
        seed: non-negative integer; every random choice comes from ``numpy.random.default_rng(seed)``.
        **options: ``shape`` (voxels along the LPS array axes, default ``(96, 96, 40)``),
            ``spacing_mm`` (three floats; default drawn per case: 3.6-4.0 mm in plane,
            5.0, 5.5 or 6.0 mm slices at the default shape, scaled by ``default / shape``
            for other shapes so the field of view stays the same), ``noise_hu`` (standard deviation, default 10-25 HU),
            ``rotation_deg`` (roll about the long axis, default within +-8),
            ``translation_mm`` (body offset in the scanner, default +-12 mm in plane,
            +-8 mm along z), ``table`` (draw the scanner table, default True).
            Unknown names raise :class:`~medseg.errors.ConfigError`.

    Returns:
        ``(image, label)``: int16 Hounsfield units and uint8 labels (1 left lung, 2 right
        lung, 3 heart) on the same grid, array ``[i, j, k]`` along patient Left, Posterior,
        Superior; the affine is RAS+ in mm (orientation code ``"LPS"``). ``image.meta``
        records the drawn parameters under ``"phantom"``.
    """
    opts, shape, rng = start_phantom("ct-thorax", seed, options, CT_THORAX_DEFAULTS, (24, 24, 12))

    spacing_mm = _spacing(rng, opts["spacing_mm"], shape)
    roll_deg = float(rng.uniform(-8, 8)) if opts["rotation_deg"] is None else float(opts["rotation_deg"])
    if opts["translation_mm"] is None:
        translation = np.array([rng.uniform(-12, 12), rng.uniform(-12, 12), rng.uniform(-8, 8)])
    else:
        translation = check_vector("ct-thorax", "translation_mm", opts["translation_mm"])
    noise_hu = float(rng.uniform(10, 25)) if opts["noise_hu"] is None else float(opts["noise_hu"])

    affine = _lps_affine(shape, spacing_mm, center_z_mm=float(rng.uniform(-260, -140)))
    world = apply_affine(affine, index_coordinates(shape))
    body_center = np.array([0.0, 0.0, affine[2, 3] + spacing_mm[2] * (shape[2] - 1) / 2]) + translation
    to_world = np.eye(4)
    to_world[:3, :3] = rotation_matrix([0, 0, 1], np.deg2rad(roll_deg))
    to_world[:3, 3] = body_center
    anat = apply_affine(np.linalg.inv(to_world), world)
    canvas = TubeCanvas(anat, np.linalg.inv(affine) @ to_world, spacing_mm, edge_mm=0.8 * float(spacing_mm[:2].mean()))

    body = _draw_body_parameters(rng)
    image, label = _render(rng, body, anat, world, canvas, shape, body_center, bool(opts["table"]))
    image = ndimage.gaussian_filter(image, sigma=(0.55, 0.55, 0.35), mode="nearest")
    image += noise_hu * correlated_noise(rng, shape, (0.6, 0.6, 0.3))
    image_hu = np.clip(np.rint(image), CT_MIN_HU, CT_MAX_HU).astype(np.int16)

    phantom = {
        "kind": "ct-thorax",
        "seed": int(seed),
        "spacing_mm": json_floats(spacing_mm),
        "roll_deg": round(roll_deg, 3),
        "translation_mm": json_floats(translation),
        "noise_hu": round(noise_hu, 3),
    }
    return phantom_volumes(image_hu, label, affine, {"modality": "CT", "kind": "ct"}, phantom)


def _spacing(rng: np.random.Generator, requested: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """Drawn spacing (always drawn, so other choices do not depend on ``requested``), or the requested one."""
    in_plane = round(float(rng.uniform(3.6, 4.0)), 3)
    slice_mm = float(rng.choice([5.0, 5.5, 6.0]))
    if requested is None:
        default_shape = np.asarray(CT_THORAX_DEFAULTS["shape"], float)
        return np.array([in_plane, in_plane, slice_mm]) * default_shape / np.asarray(shape, float)
    return check_vector("ct-thorax", "spacing_mm", requested, positive=True)


def _lps_affine(shape: tuple[int, int, int], spacing_mm: np.ndarray, center_z_mm: float) -> np.ndarray:
    """RAS+ affine of an LPS grid centred at x = y = 0 with its middle slice at ``center_z_mm`` (the table position)."""
    affine = np.diag([-spacing_mm[0], -spacing_mm[1], spacing_mm[2], 1.0])
    center_index = (np.asarray(shape, float) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ center_index + np.array([0.0, 0.0, round(center_z_mm, 1)])
    return affine


def _draw_body_parameters(rng: np.random.Generator) -> _Body:
    half_width = 150.0 * rng.uniform(0.9, 1.08)
    half_depth = 108.0 * rng.uniform(0.9, 1.08)
    fat_lateral, fat_anterior, fat_posterior = rng.uniform(8, 20), rng.uniform(8, 22), rng.uniform(6, 14)
    wall_lateral = fat_lateral + rng.uniform(9, 14)
    wall_anterior = fat_anterior + rng.uniform(12, 18)
    wall_posterior = fat_posterior + rng.uniform(34, 42)
    anterior_edge, posterior_edge = half_depth - wall_anterior, -(half_depth - wall_posterior)
    height = rng.uniform(0.92, 1.08)
    dome_right = -52.0 * height + rng.uniform(-8, 8)
    apex = dome_right + 135.0 * height
    carina = dome_right + 0.6 * 135.0 * height
    return _Body(
        half_width=half_width,
        half_depth=half_depth,
        fat_lateral=fat_lateral,
        fat_anterior=fat_anterior,
        fat_posterior=fat_posterior,
        cavity_center_v=(anterior_edge + posterior_edge) / 2,
        cavity_half_width=half_width - wall_lateral,
        cavity_half_depth=(anterior_edge - posterior_edge) / 2,
        dome_right_w=dome_right,
        dome_left_w=dome_right - rng.uniform(5, 15),
        apex_w=apex,
        hilum_w=carina - rng.uniform(12, 18),
        carina_w=carina,
        vertebra_v=posterior_edge + rng.uniform(10, 14),
        outline_wobble=np.stack([rng.normal(0, 0.02, 3), rng.uniform(0, 2 * np.pi, 3)]),
        cavity_wobble=np.stack([rng.normal(0, 0.015, 3), rng.uniform(0, 2 * np.pi, 3)]),
    )


# -- the anatomy ---------------------------------------------------------------------------
def _cavity_axes(body: _Body, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Semi-axes (mm) of the rib cage's inner outline at height ``w``: widest at the lower ribs, narrower upwards."""
    taper = smoothstep(body.dome_left_w - 10, body.apex_w + 15, w)
    return body.cavity_half_width * (1 - 0.25 * taper), body.cavity_half_depth * (1 - 0.12 * taper)


class _Cavity:
    """The rib cage's inner outline on the grid; :meth:`level` is below 1 inside (cached terms)."""

    def __init__(self, body: _Body, anat: np.ndarray) -> None:
        self.u, v, w = anat
        self.y = v - body.cavity_center_v
        self.half_width, self.half_depth = _cavity_axes(body, w)
        angle = np.arctan2(self.y / self.half_depth, self.u / self.half_width)
        self.wobble = radial_wobble(angle, *body.cavity_wobble)

    def level(self, shrink_mm: float = 0.0) -> np.ndarray:
        """Superellipse level of the outline moved inwards by ``shrink_mm`` (negative: outwards)."""
        return (
            superellipse_level(self.u, self.y, self.half_width - shrink_mm, self.half_depth - shrink_mm, 2.3)
            / self.wobble
        )


def _diaphragm_w(body: _Body, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Height (mm) of the diaphragm under each (u, v): two domes, the right one higher."""
    a, b = body.cavity_half_width, body.cavity_half_depth
    domes = []
    for side, dome in ((1.0, body.dome_right_w), (-1.0, body.dome_left_w)):
        fall = ((u - side * 0.4 * a) / (0.75 * a)) ** 2 + ((v - body.cavity_center_v - 10) / b) ** 2
        domes.append(dome - 40.0 * fall)
    return np.maximum(domes[0], domes[1])


def _render(
    rng: np.random.Generator,
    body: _Body,
    anat: np.ndarray,
    world: np.ndarray,
    canvas: TubeCanvas,
    shape: tuple[int, int, int],
    body_center: np.ndarray,
    table: bool,
) -> tuple[np.ndarray, np.ndarray]:
    u, v, w = anat
    image = np.full(shape, AIR_HU, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    texture = smooth_field(rng, shape, (1.5, 1.5, 1.0))

    if table:
        _paint_table(image, world, body_center, body)

    # body wall: subcutaneous fat, then muscle, then the thoracic cavity
    angle = np.arctan2(v / body.half_depth, u / body.half_width)
    outline = superellipse_level(u, v, body.half_width, body.half_depth, 2.4) / radial_wobble(
        angle, *body.outline_wobble
    )
    inside_body = outline < 1.0
    fat_hu = float(rng.uniform(-115, -90))
    muscle_hu = float(rng.uniform(38, 52))
    _paint(image, inside_body, fat_hu + 8 * texture)
    fat_v = np.where(v > 0, body.fat_anterior, body.fat_posterior)
    muscle_level = superellipse_level(u, v, body.half_width - body.fat_lateral, body.half_depth - fat_v, 2.4)
    muscle = inside_body & (muscle_level / radial_wobble(angle, *body.outline_wobble) < 1.0)
    _paint(image, muscle, muscle_hu + 6 * texture)

    cavity_field = _Cavity(body, anat)
    cavity = cavity_field.level() < 1.0
    diaphragm_w = _diaphragm_w(body, u, v)
    thorax = cavity & (w > diaphragm_w)
    _paint(image, thorax, muscle_hu + 6 * texture)  # what the lungs leave: chest wall / neck muscle
    upward = smoothstep(body.dome_right_w, body.apex_w + 20, w)
    mediastinum = thorax & (np.abs(u) < 24.0 + 0.25 * body.cavity_half_width * (1 - 0.5 * upward) + 6 * texture)
    _paint(image, mediastinum, float(rng.uniform(-100, -75)) + 10 * texture)  # mediastinal fat

    heart = _Heart.draw(rng, body, anat, diaphragm_w)
    organs = _MediastinalTubes(rng, body, heart, canvas)
    spine_keepout = _vertebral_body_level(body, anat, grow_mm=4.0) < 1.0
    lungs = _lungs(body, anat, cavity_field, diaphragm_w, heart, organs.keepout | spine_keepout)

    lung_hu = float(rng.uniform(-925, -895))
    dependent = np.clip(
        (body.cavity_center_v + 0.2 * body.cavity_half_depth - v) / (1.2 * body.cavity_half_depth), 0, 1
    )
    lung_value = lung_hu + float(rng.uniform(20, 55)) * dependent**1.5 + 14 * texture
    for side_label, mask in lungs.items():
        _paint(image, mask, lung_value)
        label[mask] = side_label

    vessels = _draw_lung_vessels(rng, body, canvas, lungs, organs.hila)
    _paint_soft(image, vessels, float(rng.uniform(60, 140)))
    organs.paint(image, muscle_hu)

    _paint(image, heart.pericardial_fat & thorax & ~heart.mask, float(rng.uniform(-100, -80)))
    _paint(image, heart.mask, muscle_hu - 4 + 5 * texture)
    _paint(image, heart.blood & heart.mask, muscle_hu + float(rng.uniform(10, 30)) + 5 * texture)
    label[heart.mask] = CT_THORAX_LABELS["heart"]

    _paint_abdomen(rng, body, anat, cavity_field, image, muscle_level, diaphragm_w, texture, heart.mask)
    _paint_bones(rng, body, anat, cavity_field, canvas, image)
    return image, label


def _paint(image: np.ndarray, mask: np.ndarray, value: float | np.ndarray) -> None:
    """Set ``image`` to ``value`` (a number or an array on the grid) where ``mask`` is true."""
    if np.ndim(value):
        image[mask] = value[mask]
    else:
        image[mask] = value


def _paint_soft(image: np.ndarray, occupancy: np.ndarray, value: float) -> None:
    """Blend ``value`` into ``image`` by a partial-volume ``occupancy`` in [0, 1]."""
    image += occupancy * (np.float32(value) - image)


def _paint_table(image: np.ndarray, world: np.ndarray, body_center: np.ndarray, body: _Body) -> None:
    """The scanner couch, fixed in the scanner frame under the patient: a gently curved 12 mm
    carbon-fibre shell (two 2.5 mm skins, about +150 HU) around a foam core (about -750 HU)."""
    x, y = world[0], world[1]
    top = body_center[1] - body.half_depth - 4.0 + (x - body_center[0]) ** 2 / 4000.0
    depth = top - y  # mm below the table top
    edge = 2.0

    def band(low: float, high: float) -> np.ndarray:
        return (
            np.clip((depth - low) / edge + 0.5, 0, 1) * np.clip((high - depth) / edge + 0.5, 0, 1) * (np.abs(x) < 230)
        )

    _paint_soft(image, band(0.0, 12.0), -750.0)
    _paint_soft(image, band(0.0, 2.5) + band(9.5, 12.0), 150.0)


@dataclass
class _Heart:
    """Heart as a rotated ellipsoid sitting on the diaphragm, anterior and to the left."""

    mask: np.ndarray
    blood: np.ndarray
    pericardial_fat: np.ndarray
    keepout: np.ndarray
    center: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, body: _Body, anat: np.ndarray, diaphragm_w: np.ndarray) -> _Heart:
        semi_axes = np.array([58.0, 44.0, 44.0]) * rng.uniform(0.88, 1.1) * rng.uniform(0.95, 1.05, 3)
        center_u = -0.12 * body.cavity_half_width - rng.uniform(0, 12)
        center_v = body.cavity_center_v + 0.22 * body.cavity_half_depth + rng.uniform(-5, 5)
        floor = float(_diaphragm_w(body, np.array(center_u), np.array(center_v)))
        center = np.array([center_u, center_v, floor + 0.62 * semi_axes[2]])
        yaw, tilt = np.deg2rad(rng.uniform(30, 50)), np.deg2rad(rng.uniform(15, 30))
        long_axis = np.array([-np.cos(yaw) * np.cos(tilt), np.sin(yaw) * np.cos(tilt), -np.sin(tilt)])
        up = np.array([0.0, 0.0, 1.0])
        third = up - (up @ long_axis) * long_axis
        third /= np.linalg.norm(third)
        rotation = np.stack([long_axis, np.cross(third, long_axis), third], axis=1)

        above_floor = anat[2] > diaphragm_w - 2.0
        level = ellipsoid_level(anat, center, rotation, semi_axes)
        mask = (level < 1.0) & above_floor
        blood = ellipsoid_level(anat, center, rotation, semi_axes - np.array([13.0, 11.0, 11.0])) < 1.0
        # interventricular septum: a myocardial wall across the blood pool
        towards_rv = np.array([1.0, 1.0, 0.0]) - (np.array([1.0, 1.0, 0.0]) @ long_axis) * long_axis
        towards_rv /= np.linalg.norm(towards_rv)
        septum_offset = np.tensordot(towards_rv, anat - center.reshape(3, 1, 1, 1), axes=1)
        blood &= np.abs(septum_offset - rng.uniform(2, 8)) > 4.5
        fat = (ellipsoid_level(anat, center, rotation, semi_axes + rng.uniform(3, 7)) < 1.0) & above_floor
        keepout = ellipsoid_level(anat, center, rotation, semi_axes + 9.0) < 1.0
        return cls(mask, blood, fat, keepout, center, semi_axes, rotation)


class _MediastinalTubes:
    """Aorta, pulmonary arteries, superior vena cava, trachea, main bronchi and oesophagus."""

    def __init__(self, rng: np.random.Generator, body: _Body, heart: _Heart, canvas: TubeCanvas) -> None:
        self.canvas = canvas
        top = body.apex_w + 80.0
        bottom = body.dome_right_w - 200.0
        vb = body.vertebra_v
        vc = body.cavity_center_v
        hc = heart.center
        heart_top = hc[2] + 0.8 * heart.semi_axes[2]
        arch_w = body.carina_w + rng.uniform(18, 26)
        hilum_v = vc - rng.uniform(2, 10)
        hilum_u = 36.0 + rng.uniform(0, 8)
        self.hila = {
            2: np.array([hilum_u + 4, hilum_v, body.hilum_w]),
            1: np.array([-hilum_u, hilum_v, body.hilum_w + 5]),
        }
        oesophagus_v = vb + 24.0
        trachea_v = oesophagus_v + 19.0
        self.blood_chains = [
            # ascending aorta, arch, descending aorta (through the diaphragm)
            (
                np.array(
                    [
                        [hc[0] + 25, hc[1] - 8, heart_top - 10],
                        [14, vc + 14, arch_w - 18],
                        [3, vc + 4, arch_w],
                        [-14, vb + 40, arch_w + 2],
                        [-23, vb + 24, arch_w - 16],
                        [-24, vb + 18, arch_w - 45],
                        [-20, vb + 16, bottom],
                    ]
                ),
                np.array([14.0, 13, 12, 11.5, 11, 11, 10.5]),
            ),
            # pulmonary trunk and the two pulmonary arteries to the hila
            (
                np.array(
                    [
                        [hc[0] + 8, hc[1] + 14, heart_top - 14],
                        [-10, vc + 16, body.hilum_w + 16],
                        [8, vc + 4, body.hilum_w + 14],
                        self.hila[2],
                    ]
                ),
                np.array([13.0, 12, 10, 8]),
            ),
            (
                np.array([[-10, vc + 16, body.hilum_w + 16], [-32, vc + 2, body.hilum_w + 18], self.hila[1]]),
                np.array([11.0, 10, 8]),
            ),
            # superior vena cava
            (np.array([[28, vc + 8, top], [26, vc + 6, heart_top - 5]]), np.array([9.0, 9.5])),
        ]
        carina = np.array([0.0, trachea_v - 3, body.carina_w])
        self.air_chains = [
            (np.array([[0.0, trachea_v, top], carina]), np.array([9.0, 9.0])),
            (
                np.array([carina, [22, trachea_v - 6, body.carina_w - 10], self.hila[2] + [-4, -8, -2]]),
                np.array([7.0, 6.5, 5]),
            ),
            (
                np.array([carina, [-25, trachea_v - 4, body.carina_w - 14], self.hila[1] + [6, -8, -6]]),
                np.array([6.5, 6, 5]),
            ),
        ]
        self.oesophagus = (
            np.array([[-6.0, oesophagus_v, top], [-10, oesophagus_v - 2, body.dome_left_w - 30]]),
            np.array([7.0, 7.0]),
        )

        self.blood = canvas.new_layer()
        for points, radii in self.blood_chains:
            canvas.draw_chain(self.blood, points, radii)
        self.wall = canvas.new_layer()
        self.air = canvas.new_layer()
        for points, radii in self.air_chains:
            canvas.draw_chain(self.wall, points, radii + 2.0)
            canvas.draw_chain(self.air, points, radii)
        canvas.draw_chain(self.wall, *self.oesophagus)
        self.keepout = canvas.new_layer()
        for points, radii in self.blood_chains + self.air_chains + [self.oesophagus]:
            canvas.draw_chain(self.keepout, points, radii + 5.0)
        self.keepout = self.keepout > 0.5

    def paint(self, image: np.ndarray, soft_tissue_hu: float) -> None:
        """Paint the tubes: blood and walls as soft tissue, airway lumens as air."""
        _paint_soft(image, self.wall, soft_tissue_hu)
        _paint_soft(image, self.blood, soft_tissue_hu + 3)
        _paint_soft(image, self.air, AIR_HU)


def _lungs(
    body: _Body, anat: np.ndarray, cavity: _Cavity, diaphragm_w: np.ndarray, heart: _Heart, keepout: np.ndarray
) -> dict[int, np.ndarray]:
    """Left (label 1) and right (label 2) lung masks: rib cage minus mediastinum, domed apices."""
    u, v, w = anat
    vc = body.cavity_center_v
    in_cavity = cavity.level(2.0) < 1.0
    upper = smoothstep(heart.center[2], heart.center[2] + heart.semi_axes[2], w)
    half_mediastinum = 9.0 + 16.0 * np.exp(-(((v - vc + 5) / 32.0) ** 2)) * upper
    base = in_cavity & (w > diaphragm_w) & ~heart.keepout & ~keepout
    lungs = {}
    for side, label_value, apex_shift in ((1.0, 2, 0.0), (-1.0, 1, -4.0)):
        apex_w = body.apex_w + apex_shift
        cap_start = min(body.dome_right_w, body.dome_left_w) - 10.0
        t = np.clip((w - cap_start) / (apex_w - cap_start), 0, 1)
        g = (1 - t**2.2) ** 0.55
        cap = (
            ((side * u - 0.5 * body.cavity_half_width) / (0.62 * body.cavity_half_width * g + 1e-6)) ** 2
            + ((v - vc + 12) / (0.95 * body.cavity_half_depth * g + 1e-6)) ** 2
        ) <= 1.0
        mask = base & cap & (side * u > half_mediastinum)
        lungs[label_value] = _largest_component(mask)
    return lungs


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` (scipy.ndimage.label); empty stays empty."""
    labelled, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def _draw_lung_vessels(
    rng: np.random.Generator, body: _Body, canvas: TubeCanvas, lungs: dict[int, np.ndarray], hila: dict[int, np.ndarray]
) -> np.ndarray:
    """Branching vessel trees grown from each hilum, kept inside the lung (partial-volume layer)."""
    layer = canvas.new_layer()
    for label_value, lung in lungs.items():
        side = 1.0 if label_value == 2 else -1.0
        trunks = [(0.45, 0.1, 0.88), (0.95, 0.25, -0.05), (0.6, -0.3, -0.72), (0.35, -0.75, -0.55), (0.55, 0.7, -0.3)]
        for du, dv, dw in trunks:
            direction = np.array([side * du, dv, dw]) + rng.normal(0, 0.12, 3)
            direction /= np.linalg.norm(direction)
            _grow_branch(rng, canvas, layer, lung, hila[label_value], direction, rng.uniform(26, 36), 4.8, depth=0)
    return layer


def _grow_branch(
    rng: np.random.Generator,
    canvas: TubeCanvas,
    layer: np.ndarray,
    lung: np.ndarray,
    start: np.ndarray,
    direction: np.ndarray,
    length_mm: float,
    radius_mm: float,
    depth: int,
) -> None:
    """Draw one vessel segment and recurse into two children until the vessels get thin."""
    end = start + direction * length_mm
    if depth > 0 and not _inside(canvas, lung, end):
        end = start + direction * length_mm * 0.5
        if not _inside(canvas, lung, end):
            return
    child_radius = radius_mm * 0.72
    canvas.draw_segment(layer, start, end, radius_mm, max(child_radius, 0.7))
    if child_radius < 0.9 or depth >= 6:
        return
    perpendicular = np.cross(direction, rng.normal(size=3))
    perpendicular /= np.linalg.norm(perpendicular)
    for sign in (1.0, -1.0):
        turn = rotation_matrix(perpendicular, sign * np.deg2rad(rng.uniform(18, 38)))
        child = turn @ direction + rng.normal(0, 0.08, 3)
        child /= np.linalg.norm(child)
        _grow_branch(rng, canvas, layer, lung, end, child, length_mm * rng.uniform(0.7, 0.85), child_radius, depth + 1)


def _inside(canvas: TubeCanvas, mask: np.ndarray, point_mm: np.ndarray) -> bool:
    index = np.rint(apply_affine(canvas.frame_to_index, point_mm.reshape(3, 1))[:, 0]).astype(int)
    if np.any(index < 0) or np.any(index >= mask.shape):
        return False
    return bool(mask[tuple(index)])


def _paint_abdomen(
    rng: np.random.Generator,
    body: _Body,
    anat: np.ndarray,
    cavity: _Cavity,
    image: np.ndarray,
    muscle_level: np.ndarray,
    diaphragm_w: np.ndarray,
    texture: np.ndarray,
    heart: np.ndarray,
) -> None:
    """Below the diaphragm: liver (right), stomach with a gas cap (left, anterior), spleen."""
    u, v, w = anat
    abdomen = (muscle_level < 0.93) & (w <= diaphragm_w) & (cavity.level(-4.0) < 1.0) & ~heart
    _paint(image, abdomen, 35.0 + 6 * texture)
    vc, a, b = body.cavity_center_v, body.cavity_half_width, body.cavity_half_depth
    liver = abdomen & (u + 0.45 * (v - vc) > -0.2 * a)
    _paint(image, liver, float(rng.uniform(52, 65)) + 4 * texture)
    spleen_center = np.array([-0.68 * a, vc - 0.45 * b, body.dome_left_w - 30])
    spleen = abdomen & (ellipsoid_level(anat, spleen_center, np.eye(3), np.array([24.0, 38, 42])) < 1.0)
    _paint(image, spleen, float(rng.uniform(42, 50)))
    stomach_center = np.array([-0.42 * a, vc + 0.25 * b, body.dome_left_w - 30])
    stomach = abdomen & ~liver & (ellipsoid_level(anat, stomach_center, np.eye(3), np.array([40.0, 32, 36])) < 1.0)
    _paint(image, stomach, float(rng.uniform(5, 25)))
    if rng.uniform() < 0.7:
        _paint(image, stomach & (v > stomach_center[1] + rng.uniform(5, 18)), AIR_HU)


def _vertebral_body_level(body: _Body, anat: np.ndarray, grow_mm: float = 0.0) -> np.ndarray:
    u, v, _ = anat
    return superellipse_level(u, v - body.vertebra_v, 19.0 + grow_mm, 16.0 + grow_mm, 2.2)


def _paint_bones(
    rng: np.random.Generator, body: _Body, anat: np.ndarray, cavity: _Cavity, canvas: TubeCanvas, image: np.ndarray
) -> None:
    """Spine (vertebral bodies, discs, canal, posterior arch), ribs, costal cartilage, sternum, scapulae."""
    u, v, w = anat
    vb = body.vertebra_v
    pitch = rng.uniform(22, 26)
    phase = rng.uniform(0, pitch)
    in_disc = np.mod(w - phase, pitch) < 0.22 * pitch
    vertebral_body = _vertebral_body_level(body, anat) < 1.0
    cortex = vertebral_body & (_vertebral_body_level(body, anat, grow_mm=-3.0) >= 1.0)
    cancellous_hu = float(rng.uniform(200, 320))
    _paint(image, vertebral_body, np.where(in_disc, 80.0, cancellous_hu).astype(np.float32))
    _paint(image, cortex & ~in_disc, float(rng.uniform(550, 750)))
    canal_v = vb - 16.0 - 9.0
    canal_distance = np.hypot(u, v - canal_v)
    arch = (canal_distance < 14.0) & (canal_distance >= 8.0) & (v < vb - 12.0)
    spinous = (np.abs(u) < 4.5) & (v < canal_v - 8.0) & (v > canal_v - 30.0)
    tilt = np.deg2rad(25.0)  # transverse processes point laterally and backwards
    along = np.abs(u) * np.cos(tilt) - (v - canal_v) * np.sin(tilt)
    across = np.abs(u) * np.sin(tilt) + (v - canal_v) * np.cos(tilt)
    transverse = (np.abs(across) < 4.5) & (along > 8.0) & (along < 30.0)
    segment = np.mod(w - phase, pitch) > 0.3 * pitch
    _paint(image, (arch | ((spinous | transverse) & segment)), float(rng.uniform(450, 650)))
    _paint(image, canal_distance < 8.0, 15.0)

    bone = canvas.new_layer()
    cartilage = canvas.new_layer()
    rib_pitch = rng.uniform(19, 23)
    first_rib_w = body.apex_w + rng.uniform(-2, 6)
    for rib in range(12):
        for side in (1.0, -1.0):
            bony, costal = _rib_points(body, side, first_rib_w - rib * rib_pitch, rib, rng)
            canvas.draw_chain(bone, bony, 4.8)
            if costal is not None:
                canvas.draw_chain(cartilage, costal, 4.0)
    _paint_soft(image, cartilage, 120.0)
    _paint_soft(image, bone, float(rng.uniform(500, 700)))

    sternum = canvas.new_layer()
    front = body.cavity_center_v + body.cavity_half_depth + 7.0
    for offset in (-8.0, 0.0, 8.0):
        canvas.draw_chain(
            sternum, np.array([[offset, front - 4, first_rib_w + 5], [offset, front, body.dome_right_w - 12]]), 5.0
        )
    _paint_soft(image, sternum, float(rng.uniform(300, 420)))

    for side in (1.0, -1.0):
        center = np.array([side * 0.6 * body.cavity_half_width, vb - 12.0, body.hilum_w + 25])
        plane = rotation_matrix([0, 0, 1], side * np.deg2rad(rng.uniform(20, 32)))
        scapula = ellipsoid_level(anat, center, plane, np.array([42.0, 4.5, 62.0])) < 1.0
        _paint(image, scapula & (cavity.level(-16.0) >= 1.0), float(rng.uniform(400, 550)))


def _rib_points(
    body: _Body, side: float, start_w: float, rib: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Centre line of one rib around the cavity outline, falling anteriorly; plus its cartilage."""
    end_angle = 2.35 if rib < 10 else 1.7 - 0.2 * (rib - 10)
    angles = np.linspace(0.22, end_angle, 18)
    drop = rng.uniform(55, 80) + 2.0 * rib
    ws = start_w - drop * (angles - angles[0]) / (2.35 - angles[0])
    bony = _cavity_outline_points(body, side, angles, ws, outward_mm=7.0)
    if rib >= 7:
        return bony, None
    costal_angles = np.linspace(end_angle, 2.95, 6)
    costal = _cavity_outline_points(body, side, costal_angles, np.full(6, ws[-1]), outward_mm=7.0)
    return bony, costal


def _cavity_outline_points(
    body: _Body, side: float, angles: np.ndarray, ws: np.ndarray, outward_mm: float
) -> np.ndarray:
    """Points on the rib cage outline (angle 0 posterior midline, pi anterior), pushed outwards."""
    half_width, half_depth = _cavity_axes(body, ws)
    power = 2.3
    sin, cos = np.sin(angles), np.cos(angles)
    x = side * (half_width + outward_mm) * np.abs(sin) ** (2 / power)
    y = body.cavity_center_v - (half_depth + outward_mm) * np.sign(cos) * np.abs(cos) ** (2 / power)
    return np.stack([x, y, ws], axis=1)
