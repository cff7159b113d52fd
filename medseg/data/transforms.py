"""Preprocessing as MONAI dictionary transforms that record what they did.

A sample is a dict::

    {"image": array (C, X, Y, Z), "label": array (1, X, Y, Z) uint8 (optional),
     "meta": {"case_id": str, "affine": 4x4 nested list (RAS+ mm, current grid),
              "original": {...}, "steps": [step record, ...]}}

Arrays are indexed ``[channel, i, j, k]`` (see :mod:`medseg.io.volume`). Every transform here
is a :class:`monai.transforms.MapTransform`, so chains compose with MONAI's own transforms
(``monai.transforms.Compose``). Geometry (the current ``meta["affine"]``) is shared by all
keys, which must lie on the same grid.

The contract of a recording transform (each one states the record it writes):

* **forward** (``__call__``) appends one plain-JSON **step record** ``{"step": <its STEP>, ...}``
  to ``meta["steps"]``: the load (original shape, affine, files), orientation (axis permutation
  and flips), foreground crop (bounding box), resampling (shapes and spacings in and out),
  intensity normalisation (parameters used) and padding (widths). The records are JSON, so they
  travel in the cache's case files and need no transform object to be read back.
* **inverse** (the class method ``inverse(array, record, context)``) undoes exactly that record
  on a prediction ``(C, X, Y, Z)`` (NumPy array or torch tensor) on the grid the step produced,
  returning it on the grid the step was given. Steps that leave the grid alone (normalisation)
  return it unchanged. An :class:`InverseContext` says whether the prediction holds labels or
  probabilities and what fills voxels the forward step cut away.

:func:`medseg.data.restore.restore_to_original` walks the records backwards through
:data:`INVERSES` to put a prediction on the original grid exactly. (MONAI's own
``InvertibleTransform`` keeps its records in MetaTensors applied to the same data; medseg's
records are plain JSON because the prediction is restored long after, from the cache.)

The default chain (:func:`build_preprocessing`) is load -> channel first -> orientation to RAS
-> crop to the body / non-zero region -> resample to the target spacing -> normalise ->
(pad to the patch size). Cropping before resampling is exact (the crop is recorded) and saves
the time of resampling air.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from monai.transforms import Compose, MapTransform

from medseg.config import from_dict
from medseg.config.plan import ANISOTROPY_THRESHOLD, IMAGE_MODES, LABEL_MODES, NormalizationScheme, Preprocessing
from medseg.data import intensity as intensity_lib
from medseg.data import resample as resample_lib
from medseg.data import spatial
from medseg.errors import ConfigError, GeometryError, InvalidArgumentError
from medseg.io import Volume, grid_mismatch, load_volume, orientation_code, spacing_from_affine

META = "meta"
#: Modules that worker processes (fingerprinting, preprocessing) import once, in the forkserver
#: (:func:`medseg.common.processes.process_context`), so each worker starts in well under a second.
WORKER_PRELOAD = ("torch", "monai.transforms", "medseg.data.transforms", "medseg.data.fingerprint")
#: HU above which a CT voxel counts as body when cropping (air is -1000, lung about -850..-500).
BODY_THRESHOLD_HU = -500.0


def _json_affine(affine: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in np.asarray(affine, dtype=np.float64)]


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def _floats(values, digits: int = 6) -> list[float]:
    return [round(float(v), digits) for v in values]


def current_affine(sample: Mapping[Hashable, Any], meta_key: str = META) -> np.ndarray:
    """The sample's current voxel-to-RAS+ affine (4 x 4, mm)."""
    return np.asarray(sample[meta_key]["affine"], dtype=np.float64)


def _spatial_shape(sample: Mapping[Hashable, Any], keys: Sequence[Hashable]) -> tuple[int, int, int]:
    shapes = {tuple(sample[k].shape[-3:]) for k in keys if k in sample and sample[k] is not None}
    if len(shapes) != 1:
        raise GeometryError(
            f"{sample.get(META, {}).get('case_id', '<sample>')}: keys {list(keys)} have different grids {shapes}"
        )
    return shapes.pop()


@dataclass
class InverseContext:
    """What an inverse step needs besides its record (see the module docstring).

    Attributes:
        kind: ``"label"`` (a ``(1, X, Y, Z)`` integer map) or ``"probabilities"`` (``(C, X, Y, Z)``
            float probabilities or logits).
        label_interpolation: how labels cross a resampling step: ``"nearest"`` or ``"linear"``.
        fill: per channel, the value of voxels the forward step cut away (cropping).
        remaining: the records still to undo after this one, in undo order.
    """

    kind: str
    label_interpolation: str
    fill: Sequence[float]
    remaining: Sequence[Mapping[str, Any]] = ()


class _RecordingTransform(MapTransform):
    """Base: keys present in the sample share one grid; ``label_keys`` are label maps.

    Subclasses set ``STEP`` (the ``"step"`` of their record) and implement ``inverse``."""

    STEP: ClassVar[str] = ""

    @classmethod
    def inverse(cls, array, record: Mapping[str, Any], context: InverseContext):
        """Undo ``record`` on ``array`` (see the module docstring); here: leave it unchanged."""
        return array

    def __init__(
        self, keys=("image", "label"), label_keys=("label",), meta_key: str = META, allow_missing_keys: bool = True
    ):
        super().__init__(keys, allow_missing_keys)
        self.label_keys = tuple(label_keys)
        self.meta_key = meta_key

    def present(self, data: Mapping[Hashable, Any]) -> list[Hashable]:
        return [k for k in self.key_iterator(data) if data[k] is not None]

    def record(self, data: dict, step: dict[str, Any], affine: np.ndarray | None = None) -> None:
        """Append ``step`` to ``data[meta_key]["steps"]`` and, when given, store the new grid's
        ``affine`` (4 x 4, RAS+ mm). The meta dict and its step list are copied first, so the
        input sample's meta is never changed."""
        meta = data[self.meta_key] = dict(data[self.meta_key])
        if affine is not None:
            meta["affine"] = _json_affine(affine)
        meta["steps"] = [*meta.get("steps", []), step]


class LoadVolumed(MapTransform):
    """Read image channel(s) and label with :func:`medseg.io.load_volume` (same geometry and HU
    handling as everywhere in medseg).

    Input values: a path, a list of paths (one per channel; must share a grid) or a
    :class:`~medseg.io.Volume`. Output: ``image`` as ``(X, Y, Z)`` for one channel or
    ``(C, X, Y, Z)`` for several, in the file's dtype (CT in HU); ``label`` as uint8/uint16
    ``(X, Y, Z)``. Creates ``meta`` with the case id, the original geometry and the first
    step record.

    ``ct``: whether image channels hold CT (read as Hounsfield units, padding to air; see
    ``load_volume``): ``None`` decides from each file's values, ``True``/``False`` force it
    for every channel, and a list gives one such value per channel (index = position in the
    key's list of paths; its length must match). ``clip_hu`` applies to the channels not
    marked ``False``. ``meta["ct"]`` (and the load record's ``ct``) says whether channel 0 of
    the first image key was read as CT (the body crop and the fingerprint look at channel 0);
    a multi-channel image also gets ``meta["ct_channels"]``, one bool per channel.
    """

    STEP: ClassVar[str] = "load"

    def __init__(
        self,
        keys=("image", "label"),
        label_keys=("label",),
        meta_key: str = META,
        ct: bool | None | Sequence[bool | None] = None,
        clip_hu: tuple[float, float] | None = None,
        atol_mm: float = 1e-3,
        allow_missing_keys: bool = True,
    ):
        super().__init__(keys, allow_missing_keys)
        self.label_keys = tuple(label_keys)
        self.meta_key = meta_key
        if ct is not None and not isinstance(ct, bool):
            ct = [None if v is None else bool(v) for v in ct]
            if not ct:
                raise InvalidArgumentError("LoadVolumed: ct is an empty list; give one value per image channel")
        self.ct, self.clip_hu, self.atol_mm = ct, clip_hu, atol_mm

    @classmethod
    def inverse(cls, array, record: Mapping[str, Any], context: InverseContext):
        """Nothing to undo: check that the restored prediction has the original shape."""
        if tuple(array.shape[1:]) != tuple(int(n) for n in record["shape"]):
            raise GeometryError(
                f"restore_to_original: restored shape {tuple(array.shape[1:])} != original {tuple(record['shape'])}"
            )
        return array

    def channel_ct(self, channel: int, n_channels: int, case_id: str = "<sample>") -> bool | None:
        """The ``ct`` value for image channel ``channel`` (0-based) of ``n_channels``; raises
        :class:`ConfigError` when a per-channel list (the plan's ``ct_channels``) does not have
        ``n_channels`` entries."""
        if not isinstance(self.ct, list):
            return self.ct
        if len(self.ct) != n_channels:
            raise ConfigError(
                f"{case_id}: {n_channels} image channel(s) but CT is set for {len(self.ct)} channel(s) "
                f"(ct_channels {self.ct}); the plan was made for a different number of channels"
            )
        return self.ct[channel]

    def _load(self, value, label: bool, ct: bool | None = None) -> Volume:
        if isinstance(value, Volume):
            return value
        if label:
            return load_volume(value, label=True)
        return load_volume(value, ct=ct, clip_hu=None if ct is False else self.clip_hu)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        out = dict(data)
        reference: Volume | None = None
        sources: dict[str, list[str]] = {}
        channel_kinds: list[str] | None = None
        case_name = str((data.get(self.meta_key) or {}).get("case_id") or "<sample>")
        for key in self.key_iterator(data):
            value = data[key]
            if value is None:
                continue
            is_label = key in self.label_keys
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            volumes = [
                self._load(v, is_label, None if is_label else self.channel_ct(c, len(values), case_name))
                for c, v in enumerate(values)
            ]
            for volume in volumes:
                if reference is None:
                    reference = volume
                    continue
                problem = grid_mismatch(
                    reference.affine,
                    reference.shape,
                    volume.affine,
                    volume.shape,
                    self.atol_mm,
                    (reference.name, volume.name),
                )
                if problem:
                    raise GeometryError(f"{volume.name} is not on the grid of {reference.name}: {problem}")
            if not is_label and channel_kinds is None:
                channel_kinds = [str(v.meta.get("kind", "image")) for v in volumes]
            sources[str(key)] = [v.name for v in volumes]
            arrays = [v.array for v in volumes]
            out[key] = arrays[0] if len(arrays) == 1 else np.stack(arrays)
        if reference is None:
            raise InvalidArgumentError(f"LoadVolumed: none of the keys {list(self.keys)} is in the sample")
        meta = dict(out.get(self.meta_key) or {})
        case_id = meta.get("case_id") or Path(reference.name).name
        original = {
            "shape": _ints(reference.shape),
            "affine": _json_affine(reference.affine),
            "spacing_mm": _floats(reference.spacing_mm),
            "orientation": reference.orientation,
            "sources": sources,
        }
        ct_channels = [kind == "ct" for kind in channel_kinds or []]
        is_ct = bool(ct_channels and ct_channels[0])
        meta.update(case_id=case_id, affine=original["affine"], original=original, ct=is_ct)
        step: dict[str, Any] = {"step": "load", **original, "ct": is_ct}
        if len(ct_channels) > 1:  # single-channel records keep exactly their former keys
            meta["ct_channels"] = step["ct_channels"] = ct_channels
        else:
            meta.pop("ct_channels", None)
        meta["steps"] = [step]
        out[self.meta_key] = meta
        return out


class EnsureChannelFirstd(_RecordingTransform):
    """Give 3D arrays a leading channel axis: ``(X, Y, Z)`` -> ``(1, X, Y, Z)`` (no record needed:
    it does not change the grid)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        out = dict(data)
        for key in self.present(data):
            if out[key].ndim == 3:
                out[key] = out[key][None]
            elif out[key].ndim != 4:
                raise GeometryError(
                    f"{key}: expected a 3D volume or channel-first 4D array, got shape {out[key].shape}"
                )
        return out


class Orientationd(_RecordingTransform):
    """Permute and flip axes so they point along ``axcodes`` (default ``"RAS"``); exact, no
    interpolation (oblique grids go to the closest axes and stay oblique). ``"none"`` keeps the
    file's voxel order (recorded as the identity), e.g. for oblique stacks whose slice axis
    would land on different canonical axes in different cases.

    Record: ``permutation``, ``flips``, ``from``/``to`` codes, ``shape_in``/``shape_out``;
    the inverse permutes and flips back (exact, a view where NumPy allows)."""

    STEP: ClassVar[str] = "orientation"

    def __init__(self, keys=("image", "label"), axcodes: str = "RAS", **kwargs):
        super().__init__(keys, **kwargs)
        self.axcodes = "none" if str(axcodes).lower() == "none" else spatial.check_axcodes(axcodes)

    @classmethod
    def inverse(cls, array, record: Mapping[str, Any], context: InverseContext):
        return spatial.invert_orientation(array, record["permutation"], record["flips"])

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        out = dict(data)
        keys = self.present(data)
        affine = current_affine(out, self.meta_key)
        shape_in = _spatial_shape(out, keys)
        if self.axcodes == "none":
            permutation, flips = [0, 1, 2], [False, False, False]
        else:
            permutation, flips = spatial.orientation_plan(affine, self.axcodes)
        for key in keys:
            out[key] = spatial.apply_orientation(out[key], permutation, flips)
        new_affine = affine @ spatial.reorient_index_map(shape_in, permutation, flips)
        self.record(
            out,
            {
                "step": "orientation",
                "from": orientation_code(affine),
                "to": orientation_code(new_affine),
                "permutation": _ints(permutation),
                "flips": [bool(f) for f in flips],
                "shape_in": _ints(shape_in),
                "shape_out": _ints(shape_in[p] for p in permutation),
            },
            affine=new_affine,
        )
        return out


def mixed_ct_channels(meta: Mapping[str, Any], image: np.ndarray) -> list[bool] | None:
    """``meta["ct_channels"]`` when ``image`` (``(C, X, Y, Z)``) has those channels and they
    mix CT with other kinds; ``None`` otherwise (then channel 0's ``meta["ct"]`` speaks for
    the image, as it always has)."""
    flags = meta.get("ct_channels")
    if not flags or len(set(bool(f) for f in flags)) < 2 or image.ndim != 4 or image.shape[0] != len(flags):
        return None
    return [bool(f) for f in flags]


def mixed_foreground_mask(
    image: np.ndarray, ct_channels: Sequence[bool], body_threshold_hu: float = BODY_THRESHOLD_HU
) -> np.ndarray:
    """Foreground of an image ``(C, X, Y, Z)`` whose channels mix CT and other kinds: the
    union of the CT channels' body (HU above ``body_threshold_hu``) and the other channels'
    non-zero voxels. Returns a bool ``(X, Y, Z)`` array (all False for zero channels)."""
    mask = np.zeros(image.shape[1:], dtype=bool)
    for channel, is_ct in zip(image, ct_channels):
        mask |= channel > body_threshold_hu if is_ct else channel != 0
    return mask


class CropForegroundd(_RecordingTransform):
    """Crop all keys to the bounding box of the body (CT: HU above ``body_threshold_hu``) or of
    the non-zero voxels (other images), grown by ``margin`` voxels.

    ``mode``: ``"auto"`` (body for CT, non-zero otherwise; an image whose channels mix CT and
    other kinds, per ``meta["ct_channels"]``, uses the union of each channel's own region,
    see :func:`mixed_foreground_mask`), ``"body"``, ``"nonzero"`` or ``"none"``.
    With ``include_label`` the box also contains every labelled voxel, so cropping never
    loses a label. The mask is judged on a 2x-strided copy for speed (the box is then at
    most one voxel larger). An empty mask means no crop (recorded as the full box).

    Record: ``bbox`` (``[start, stop)`` per axis), ``shape_in``/``shape_out``. The inverse puts
    the prediction back into ``shape_in`` and fills the border with the context's ``fill``
    (background: label 0, probability 1 for class 0 and 0 for the others).
    """

    STEP: ClassVar[str] = "crop"

    def __init__(
        self,
        keys=("image", "label"),
        source_key: str = "image",
        mode: str = "auto",
        margin: int = 2,
        body_threshold_hu: float = BODY_THRESHOLD_HU,
        include_label: bool = True,
        **kwargs,
    ):
        super().__init__(keys, **kwargs)
        if mode not in ("auto", "body", "nonzero", "none"):
            raise InvalidArgumentError(f"crop: {mode!r} is not one of auto, body, nonzero, none")
        self.source_key, self.mode, self.margin = source_key, mode, int(margin)
        self.body_threshold_hu, self.include_label = float(body_threshold_hu), include_label

    def bbox(self, data: Mapping[Hashable, Any]) -> list[list[int]]:
        image = data[self.source_key]
        shape = image.shape[-3:]
        full = [[0, int(n)] for n in shape]
        mode = self.mode
        if mode == "none":
            return full
        mixed = mixed_ct_channels(data[self.meta_key], image)
        if mode == "auto" and mixed is None:
            mode = "body" if data[self.meta_key].get("ct") else "nonzero"
        coarse = image[..., ::2, ::2, ::2]
        if mode == "auto":
            mask = mixed_foreground_mask(coarse, mixed, self.body_threshold_hu)
        elif mode == "body":
            mask = coarse[0] > self.body_threshold_hu if coarse.ndim == 4 else coarse > self.body_threshold_hu
        else:
            mask = (coarse != 0).any(axis=0) if coarse.ndim == 4 else coarse != 0
        box = spatial.bbox_of_mask(mask)
        if box is not None:
            box = [[max(0, 2 * s - self.margin), min(n, 2 * e + self.margin)] for (s, e), n in zip(box, shape)]
        if self.include_label:
            for key in self.label_keys:
                if data.get(key) is not None:
                    label = data[key]
                    box = spatial.union_bbox(box, spatial.bbox_of_mask((label[0] if label.ndim == 4 else label) > 0))
        return box or full

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        out = dict(data)
        keys = self.present(data)
        shape_in = _spatial_shape(out, keys)
        box = self.bbox(out)
        for key in keys:
            out[key] = spatial.crop(out[key], box)
        affine = current_affine(out, self.meta_key) @ spatial.crop_index_map(box)
        self.record(
            out,
            {
                "step": "crop",
                "bbox": [_ints(b) for b in box],
                "shape_in": _ints(shape_in),
                "shape_out": _ints(e - s for s, e in box),
            },
            affine=affine,
        )
        return out

    @classmethod
    def inverse(cls, array, record: Mapping[str, Any], context: InverseContext):
        """``array`` put back into the uncropped ``shape_in``, the rest filled per channel with
        ``context.fill``.

        When the only spatial step left to undo is an orientation, a NumPy result is allocated
        in the original file's axis order and filled through an oriented view, so undoing the
        orientation is a free view rather than a second full-size copy (the peak memory of
        restoring a large scan is one full-size array, not two)."""
        shape = (array.shape[0], *[int(n) for n in record["shape_in"]])
        following = [step for step in context.remaining if step["step"] not in ("load", "normalize")]
        if spatial.is_tensor(array) or len(following) != 1 or following[0]["step"] != Orientationd.STEP:
            out = _filled(shape, array, context.fill)
        else:
            permutation, flips = following[0]["permutation"], following[0]["flips"]
            original = [0, 0, 0]
            for oriented_axis, file_axis in enumerate(permutation):
                original[file_axis] = shape[1 + oriented_axis]
            out = spatial.apply_orientation(np.empty((shape[0], *original), dtype=array.dtype), permutation, flips)
            for channel, value in enumerate(context.fill):
                out[channel] = value
        out[(slice(None),) + tuple(slice(int(start), int(stop)) for start, stop in record["bbox"])] = array
        return out


def _filled(shape: tuple[int, ...], like, values: Sequence[float]):
    """Array of ``shape`` (channels first) filled per channel with ``values``, same kind as ``like``."""
    if spatial.is_tensor(like):
        import torch

        out = torch.empty(shape, dtype=like.dtype, device=like.device)
    else:
        out = np.empty(shape, dtype=like.dtype)
    for channel, value in enumerate(values):
        out[channel] = value
    return out


class Resampled(_RecordingTransform):
    """Resample to ``target_spacing_mm`` on the extent-preserving grid of
    :mod:`medseg.data.resample` (torch; exact grid mapping), images with ``image_mode``
    (linear / bspline / nearest) as float32, label maps with ``label_mode`` (nearest / linear
    arg-max) keeping their dtype and, with ``keep_all_classes``, every class.
    Anisotropic data (max/min spacing > ``anisotropy_threshold``) are resampled in-plane
    only, with nearest neighbour across slices. Same shape in and out: arrays pass unchanged.

    Record: ``shape_in``/``shape_out``, spacings in and out, ``separate_z_axis`` and the modes.
    The inverse resamples back to ``shape_in`` on the same extent-preserving grid:
    probabilities linearly (with the same "separate z"), labels by nearest neighbour or, with
    the context's ``label_interpolation="linear"``, per-class linear then arg-max.
    """

    STEP: ClassVar[str] = "resample"

    def __init__(
        self,
        keys=("image", "label"),
        target_spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
        image_mode: str = "linear",
        label_mode: str = "nearest",
        anisotropy_threshold: float = ANISOTROPY_THRESHOLD,
        keep_all_classes: bool = True,
        **kwargs,
    ):
        super().__init__(keys, **kwargs)
        if len(target_spacing_mm) != 3 or any(float(s) <= 0 for s in target_spacing_mm):
            raise InvalidArgumentError(f"target_spacing_mm: expected 3 positive numbers, got {list(target_spacing_mm)}")
        if image_mode not in IMAGE_MODES:
            raise InvalidArgumentError(f"image_interpolation: {image_mode!r} is not one of {', '.join(IMAGE_MODES)}")
        if label_mode not in LABEL_MODES:
            raise InvalidArgumentError(f"label_interpolation: {label_mode!r} is not one of {', '.join(LABEL_MODES)}")
        self.target = [float(s) for s in target_spacing_mm]
        self.image_mode, self.label_mode = image_mode, label_mode
        self.anisotropy_threshold, self.keep_all_classes = float(anisotropy_threshold), keep_all_classes

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        out = dict(data)
        keys = self.present(data)
        affine = current_affine(out, self.meta_key)
        shape_in = _spatial_shape(out, keys)
        spacing_in = spacing_from_affine(affine)
        shape_out = resample_lib.output_shape(shape_in, spacing_in, self.target)
        z_axis = resample_lib.separate_z_axis(spacing_in, self.target, self.anisotropy_threshold)
        for key in keys:
            array = out[key]
            if key in self.label_keys:
                if tuple(array.shape[-3:]) != tuple(shape_out):
                    out[key] = resample_lib.resample_label(
                        array,
                        shape_out,
                        mode=self.label_mode,
                        separate_z=z_axis,
                        keep_all_classes=self.keep_all_classes,
                    )
            else:
                out[key] = resample_lib.resample_image(array, shape_out, mode=self.image_mode, separate_z=z_axis)
        new_affine = resample_lib.resampled_affine(affine, shape_in, shape_out)
        self.record(
            out,
            {
                "step": "resample",
                "shape_in": _ints(shape_in),
                "shape_out": _ints(shape_out),
                "spacing_in_mm": _floats(spacing_in),
                "spacing_out_mm": _floats(spacing_from_affine(new_affine)),
                "target_spacing_mm": _floats(self.target),
                "separate_z_axis": z_axis,
                "image_mode": self.image_mode,
                "label_mode": self.label_mode,
            },
            affine=new_affine,
        )
        return out

    @classmethod
    def inverse(cls, array, record: Mapping[str, Any], context: InverseContext):
        shape_in = tuple(int(n) for n in record["shape_in"])
        if tuple(array.shape[1:]) == shape_in:
            return array
        z_axis = record.get("separate_z_axis")
        if context.kind == "probabilities":
            return resample_lib.resample_probabilities(array, shape_in, separate_z=z_axis)
        return resample_lib.resample_label(
            array, shape_in, mode=context.label_interpolation, separate_z=z_axis, keep_all_classes=False
        )


Scheme = NormalizationScheme | Mapping[str, Any]


class NormalizeIntensityd(_RecordingTransform):
    """Normalise image channels with per-channel schemes (see :mod:`medseg.data.intensity`);
    converts to float32. ``schemes``: one :class:`~medseg.config.plan.NormalizationScheme` (or
    its plain dict) per channel; a single one applies to all.

    Record: the parameters used per channel. Intensities are not predicted, so the inverse
    leaves a prediction unchanged."""

    STEP: ClassVar[str] = "normalize"

    def __init__(self, keys=("image",), schemes: Sequence[Scheme] | Scheme = ({"scheme": "zscore"},), **kwargs):
        super().__init__(keys, label_keys=(), **kwargs)
        schemes = [schemes] if isinstance(schemes, (Mapping, NormalizationScheme)) else list(schemes)
        self.schemes = [intensity_lib.check_scheme(s, f"normalization[{i}]") for i, s in enumerate(schemes)]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        out = dict(data)
        used = []
        for key in self.present(data):
            array = out[key]
            array = array.astype(np.float32) if array.dtype != np.float32 or not array.flags.writeable else array
            if array.ndim == 3:
                array = array[None]
            if len(self.schemes) not in (1, array.shape[0]):
                raise InvalidArgumentError(
                    f"normalization: {len(self.schemes)} schemes for {array.shape[0]} image channels"
                )
            for channel in range(array.shape[0]):
                scheme = self.schemes[channel if len(self.schemes) > 1 else 0]
                used.append({"key": str(key), "channel": channel, **intensity_lib.normalize(array[channel], scheme)})
            out[key] = array
        self.record(out, {"step": "normalize", "channels": used})
        return out


class PadToSized(_RecordingTransform):
    """Pad symmetrically to at least ``size`` voxels per axis: images with ``image_value``
    (``None``: each channel's minimum, i.e. background), labels with 0. Recorded even when
    nothing is padded.

    Record: ``widths`` (before, after) per axis; the inverse cuts the padded border off."""

    STEP: ClassVar[str] = "pad"

    def __init__(
        self, keys=("image", "label"), size: Sequence[int] = (1, 1, 1), image_value: float | None = None, **kwargs
    ):
        super().__init__(keys, **kwargs)
        self.size = _ints(size)
        self.image_value = image_value

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        out = dict(data)
        keys = self.present(data)
        shape_in = _spatial_shape(out, keys)
        widths = spatial.pad_widths_to_size(shape_in, self.size)
        for key in keys:
            array = out[key]
            if key in self.label_keys:
                out[key] = spatial.pad(array, widths, 0)
            elif array.ndim == 4 and self.image_value is None:
                out[key] = np.stack([spatial.pad(c, widths, float(c.min()) if c.size else 0.0) for c in array])
            else:
                out[key] = spatial.pad(array, widths, self.image_value or 0.0)
        affine = current_affine(out, self.meta_key) @ spatial.pad_index_map(widths)
        self.record(
            out,
            {
                "step": "pad",
                "widths": [_ints(w) for w in widths],
                "shape_in": _ints(shape_in),
                "shape_out": _ints(np.add(shape_in, np.sum(widths, axis=1))),
            },
            affine=affine,
        )
        return out

    @classmethod
    def inverse(cls, array, record: Mapping[str, Any], context: InverseContext):
        shape = array.shape[1:]
        kept = tuple(slice(int(before), int(n) - int(after)) for (before, after), n in zip(record["widths"], shape))
        return array[(slice(None), *kept)]


#: The inverse of each recorded step, by the record's ``"step"`` (see the module docstring).
INVERSES: dict[str, type] = {
    transform.STEP: transform
    for transform in (LoadVolumed, Orientationd, CropForegroundd, Resampled, NormalizeIntensityd, PadToSized)
}


class ToContiguousd(MapTransform):
    """Make arrays C-contiguous (after views from orientation/cropping); label maps as uint8
    when their values fit. Does not change the grid."""

    def __init__(self, keys=("image", "label"), label_keys=("label",), allow_missing_keys: bool = True):
        super().__init__(keys, allow_missing_keys)
        self.label_keys = tuple(label_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        out = dict(data)
        for key in self.key_iterator(data):
            if out[key] is None:
                continue
            array = np.ascontiguousarray(out[key])
            if key in self.label_keys and array.dtype != np.uint8 and (array.size == 0 or array.max() <= 255):
                array = array.astype(np.uint8)
            out[key] = array
        return out


class MedsegCompose(Compose):
    """:class:`monai.transforms.Compose` that re-raises the original exception of a failing
    transform (MONAI wraps it in ``RuntimeError("applying transform ...")``), so a
    :class:`~medseg.errors.MedsegError` naming the file reaches the user unchanged."""

    def __call__(self, input_, *args, **kwargs):
        try:
            return super().__call__(input_, *args, **kwargs)
        except RuntimeError as exc:
            original: BaseException = exc
            while (
                isinstance(original, RuntimeError)
                and original.__cause__ is not None
                and str(original).startswith("applying transform")
            ):
                original = original.__cause__
            if original is exc:
                raise
            raise original from None


# -- the default chain from a plan -----------------------------------------------------------
def build_preprocessing(
    preprocessing: Preprocessing | Mapping[str, Any],
    *,
    keys: Sequence[str] = ("image", "label"),
    pad_to: Sequence[int] | None = None,
) -> Compose:
    """The default chain for a plan's ``preprocessing`` section (a
    :class:`~medseg.config.plan.Preprocessing`, or its plain form, validated; unset keys take
    that class's defaults).

    load (medseg loader; CT per :meth:`~medseg.config.plan.Preprocessing.load_ct`) -> channel
    first -> orientation -> crop -> resample -> normalise -> contiguous arrays -> optional pad
    to ``pad_to`` voxels. Returns a :class:`MedsegCompose` (a MONAI ``Compose``); apply it to
    ``{"image": path(s), "label": path or None, "meta": {"case_id": ...}}``.
    """
    if not isinstance(preprocessing, Preprocessing):
        preprocessing = from_dict(Preprocessing, preprocessing, "preprocessing")
    keys = tuple(keys)
    chain = [
        LoadVolumed(keys, ct=preprocessing.load_ct()),
        EnsureChannelFirstd(keys),
        Orientationd(keys, axcodes=preprocessing.orientation),
        CropForegroundd(keys, mode=preprocessing.crop, margin=preprocessing.crop_margin_voxels),
        Resampled(
            keys,
            target_spacing_mm=preprocessing.target_spacing_mm,
            image_mode=preprocessing.image_interpolation,
            label_mode=preprocessing.label_interpolation,
            anisotropy_threshold=preprocessing.anisotropy_threshold,
            keep_all_classes=preprocessing.keep_all_classes,
        ),
        NormalizeIntensityd(("image",), schemes=preprocessing.normalization),
        ToContiguousd(keys),
    ]
    if pad_to is not None:
        chain.append(PadToSized(keys, size=pad_to))
    return MedsegCompose(chain)


def preprocess_case(
    images: str | Path | Volume | Sequence[str | Path | Volume],
    preprocessing: Preprocessing | Mapping[str, Any],
    *,
    label: str | Path | Volume | None = None,
    case_id: str | None = None,
    pad_to: Sequence[int] | None = None,
) -> dict:
    """Run :func:`build_preprocessing` on one case.

    Returns ``{"image": float32 (C, X, Y, Z), "label": uint8 (1, X, Y, Z) or absent,
    "meta": {...}}`` where ``meta["steps"]`` is the record that
    :func:`medseg.data.restore.restore_to_original` needs (and ``meta["affine"]`` the grid's
    RAS+ affine in mm).
    """
    chain = build_preprocessing(preprocessing, pad_to=pad_to)
    image_value = list(images) if isinstance(images, (list, tuple)) else images
    sample = {"image": image_value, "label": label, META: {"case_id": case_id} if case_id else {}}
    if label is None:
        sample.pop("label")
    return chain(sample)
