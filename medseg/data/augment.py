"""Patch augmentation in torch: one resample for all spatial transforms, vectorised intensity.

Spatial: rotation and scaling (and an optional elastic displacement, added to the patch
offsets before the affine map) are composed into one sampling grid, and the patch is drawn
in one resampling (trilinear for images, nearest for labels) from a crop that is just large
enough (see :meth:`Augmenter.source_extent`) instead of resampling once per transform. The
3D sampling runs on torch's vectorised 2D ``grid_sample`` kernel (see :func:`sample_3d`),
which is several times faster on CPU than its 3D kernel. Rotations are physical (in mm, using
the voxel spacing), about all three axes for near-isotropic 3D patches and in-plane only (about
the lowest-resolution axis) for anisotropic ones and for 2D. ``scale`` multiplies the size of
the sampled region (> 1 shows more context, structures look smaller). Images are interpolated linearly, label maps by
nearest neighbour (they stay integer). Flips and 90-degree rotations are exact index
operations done afterwards. When no resampling transform is drawn, the patch is a plain crop.

Intensity (per channel, on the patch): Gaussian noise, Gaussian blur (separable), brightness
(multiplicative), contrast (around the mean, range preserved), simulated low resolution
(nearest down, linear up), gamma (optionally on the inverted image, mean/std retained). The
order and default probabilities follow nnU-Net (see ``configs/augmentation_default.yaml``).

Determinism: :meth:`Augmenter.draw` takes a ``numpy.random.Generator``; the same generator
state gives the same parameters and the same noise (the torch generator is seeded from it).
Arrays are channel-first ``(C, *spatial)`` with 2 or 3 spatial axes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medseg.data.config import AugmentationConfig, load_augmentation_config
from medseg.errors import InvalidArgumentError


@dataclass
class AugmentationParams:
    """Everything drawn for one patch (so a patch can be reproduced or inspected)."""

    matrix: np.ndarray | None = None  # patch offset (voxels) -> source offset (voxels)
    elastic: dict[str, float] | None = None
    flips: list[int] = field(default_factory=list)
    rot90: tuple[int, tuple[int, int]] | None = None
    intensity: dict[str, Any] = field(default_factory=dict)
    torch_seed: int = 0

    @property
    def resamples(self) -> bool:
        return self.matrix is not None or self.elastic is not None


def _rotation_3d(angles_rad: Sequence[float]) -> np.ndarray:
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _rotation_in_plane(angle_rad: float, dims: int, plane: tuple[int, int]) -> np.ndarray:
    rotation = np.eye(dims)
    a, b = plane
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    rotation[a, a], rotation[a, b], rotation[b, a], rotation[b, b] = c, -s, s, c
    return rotation


class Augmenter:
    """Draws and applies augmentation for patches of ``patch_size`` voxels.

    Args:
        config: augmentation config (:class:`~medseg.data.config.AugmentationConfig`, YAML
            path, dict, ``None`` for defaults; see :func:`~medseg.data.config.load_augmentation_config`).
        patch_size: output patch size, 2 or 3 spatial axes (voxels).
        spacing_mm: voxel spacing of the patch axes (mm), for physical rotations and to
            decide in-plane-only rotation (max/min spacing > 3). Default isotropic.
    """

    def __init__(
        self,
        config: AugmentationConfig | str | Mapping[str, Any] | None,
        patch_size: Sequence[int],
        spacing_mm: Sequence[float] | None = None,
    ):
        self.config = load_augmentation_config(config)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.dims = len(self.patch_size)
        if self.dims not in (2, 3):
            raise InvalidArgumentError(f"patch_size must have 2 or 3 axes, got {patch_size}")
        spacing = np.ones(self.dims) if spacing_mm is None else np.asarray(spacing_mm, dtype=np.float64)
        self.spacing = spacing
        self.anisotropic = bool(spacing.max() / spacing.min() > 3.0)
        self._offsets: list[torch.Tensor] | None = None

    # -- drawing ---------------------------------------------------------------------------
    def draw(self, rng: np.random.Generator) -> AugmentationParams:
        """Draw one patch's parameters from ``rng`` (every random number comes from it)."""
        spatial, intensity = self.config.spatial, self.config.intensity
        params = AugmentationParams(torch_seed=int(rng.integers(0, 2**62)))
        matrix = None
        if rng.random() < spatial.rotation.p:
            low, high = np.deg2rad(spatial.rotation.degrees)
            if self.dims == 3 and not self.anisotropic:
                rotation = _rotation_3d(rng.uniform(low, high, size=3))
            else:
                plane = (0, 1) if self.dims == 2 else tuple(a for a in range(3) if a != int(np.argmax(self.spacing)))
                rotation = _rotation_in_plane(rng.uniform(low, high), self.dims, plane)  # type: ignore[arg-type]
            # physical rotation: voxel offsets -> mm -> rotate -> voxel offsets
            matrix = np.diag(1.0 / self.spacing) @ rotation @ np.diag(self.spacing)
        if rng.random() < spatial.scale.p:
            factor = rng.uniform(*spatial.scale.range)
            matrix = (np.eye(self.dims) if matrix is None else matrix) * factor
        params.matrix = matrix
        if rng.random() < spatial.elastic.p:
            params.elastic = {
                "magnitude": float(rng.uniform(*spatial.elastic.magnitude_voxels)),
                "sigma": float(rng.uniform(*spatial.elastic.sigma_voxels)),
            }
        params.flips = [a for a in spatial.flip.axes if a < self.dims and rng.random() < spatial.flip.p]
        axes = tuple(a for a in spatial.rot90.axes if a < self.dims)[:2]
        if len(axes) == 2 and rng.random() < spatial.rot90.p:
            square = self.patch_size[axes[0]] == self.patch_size[axes[1]]
            params.rot90 = (int(rng.integers(1, 4)) if square else 2, axes)  # type: ignore[assignment]
        for name in ("gaussian_noise", "gaussian_blur", "brightness", "contrast", "low_resolution", "gamma"):
            cfg = getattr(intensity, name)
            if rng.random() >= cfg.p:
                continue
            if name == "gaussian_noise":
                params.intensity[name] = float(rng.uniform(*cfg.variance))
            elif name == "gaussian_blur":
                params.intensity[name] = float(rng.uniform(*cfg.sigma))
            elif name == "brightness":
                params.intensity[name] = float(rng.uniform(*cfg.multiplier))
            elif name == "contrast":
                params.intensity[name] = float(rng.uniform(*cfg.factor))
            elif name == "low_resolution":
                params.intensity[name] = float(rng.uniform(*cfg.zoom))
            elif name == "gamma":
                params.intensity[name] = (float(rng.uniform(*cfg.gamma)), bool(rng.random() < cfg.p_invert))
        return params

    def source_extent(self, params: AugmentationParams) -> tuple[int, ...]:
        """Size (voxels) of the crop, centred on the patch centre, that contains every source
        position the patch samples (rotated/scaled box plus the elastic magnitude and a
        1-voxel margin for linear interpolation). Without resampling: the patch size."""
        if not params.resamples:
            return self.patch_size
        half = (np.asarray(self.patch_size, dtype=np.float64) - 1) / 2
        if params.elastic is not None:  # displacements are added to the patch offsets
            half = half + params.elastic["magnitude"]
        matrix = np.eye(self.dims) if params.matrix is None else params.matrix
        reach = np.abs(matrix) @ half
        return tuple(int(2 * math.ceil(r) + 3) for r in reach)

    # -- applying --------------------------------------------------------------------------
    def _axes(self) -> list[torch.Tensor]:
        """Per-axis voxel offsets of the patch from its centre."""
        if self._offsets is None:
            self._offsets = [torch.arange(n, dtype=torch.float32) - (n - 1) / 2 for n in self.patch_size]
        return self._offsets

    def spatial(
        self,
        image: torch.Tensor,
        label: torch.Tensor | None,
        params: AugmentationParams,
        centre: Sequence[float],
        generator: torch.Generator | None = None,
        label_dtype: torch.dtype = torch.uint8,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Resample ``image`` ``(C, *S)`` (float32) and ``label`` ``(1, *S)`` (any dtype;
        float32 saves a conversion) at the patch grid centred on ``centre`` (voxel coordinates
        in the crop), transformed by ``params``: image linearly, label by nearest neighbour.
        Returns ``(C, *patch)`` float32 and ``(1, *patch)`` as ``label_dtype``. The crop must
        contain every sampled position: make it :meth:`source_extent` large."""
        if not params.resamples:
            return image, (label.to(label_dtype) if label is not None else None)
        matrix = np.eye(self.dims) if params.matrix is None else np.asarray(params.matrix, dtype=np.float64)
        displacement = self._elastic_field(params.elastic, generator) if params.elastic is not None else None
        image = image.float()
        label = label.float() if label is not None else None
        sample = sample_3d if self.dims == 3 else _sample_2d
        out, out_label = sample(image, label, self._axes(), matrix, centre, self.patch_size, displacement)
        return out, (out_label.round().to(label_dtype) if out_label is not None else None)

    def _elastic_field(self, elastic: Mapping[str, float], generator: torch.Generator | None) -> torch.Tensor:
        """Random displacement field ``(*patch, d)`` in voxels: Gaussian noise on a control grid
        with one point every ``sigma`` voxels, interpolated (bi/trilinear) to the patch and
        scaled so the largest component is ``magnitude`` voxels."""
        control = [max(2, int(math.ceil(n / elastic["sigma"])) + 1) for n in self.patch_size]
        noise = torch.randn((self.dims, *control), generator=generator)
        mode = "trilinear" if self.dims == 3 else "bilinear"
        field_ = F.interpolate(noise[None], size=self.patch_size, mode=mode, align_corners=True)[0]
        peak = field_.abs().amax().clamp_min(1e-6)
        field_ = field_ * (elastic["magnitude"] / peak)
        return field_.movedim(0, -1)

    def flip_and_rotate(self, image: torch.Tensor, label: torch.Tensor | None, params: AugmentationParams):
        """Apply the drawn mirror flips and 90-degree rotation (exact)."""
        if params.flips:
            axes = [a + 1 for a in params.flips]
            image = image.flip(axes)
            label = label.flip(axes) if label is not None else None
        if params.rot90 is not None:
            k, (a, b) = params.rot90
            image = torch.rot90(image, k, (a + 1, b + 1))
            label = torch.rot90(label, k, (a + 1, b + 1)) if label is not None else None
        return image, label

    def intensity(
        self, image: torch.Tensor, params: AugmentationParams, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Apply the drawn intensity transforms to ``image`` ``(C, *patch)`` float32."""
        ops = params.intensity
        if not ops:
            return image
        image = image.clone()
        reduce = tuple(range(1, image.ndim))
        if "gaussian_noise" in ops:
            image += torch.randn(image.shape, generator=generator) * math.sqrt(ops["gaussian_noise"])
        if "gaussian_blur" in ops:
            image = gaussian_blur(image, ops["gaussian_blur"])
        if "brightness" in ops:
            image *= ops["brightness"]
        if "contrast" in ops:
            mean = image.mean(dim=reduce, keepdim=True)
            low, high = image.amin(dim=reduce, keepdim=True), image.amax(dim=reduce, keepdim=True)
            image = ((image - mean) * ops["contrast"] + mean).clamp(low, high)
        if "low_resolution" in ops:
            image = simulate_low_resolution(image, ops["low_resolution"])
        if "gamma" in ops:
            gamma, invert = ops["gamma"]
            image = adjust_gamma(image, gamma, invert, self.config.intensity.gamma.retain_stats)
        return image

    def __call__(
        self,
        image: torch.Tensor,
        label: torch.Tensor | None,
        params: AugmentationParams,
        centre: Sequence[float],
        label_dtype: torch.dtype = torch.uint8,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Spatial, then flips/rot90, then intensity, for one crop (see :meth:`spatial`)."""
        generator = torch.Generator().manual_seed(params.torch_seed)
        image, label = self.spatial(image, label, params, centre, generator, label_dtype)
        image, label = self.flip_and_rotate(image, label, params)
        image = self.intensity(image.float(), params, generator)
        return image.contiguous(), (label.contiguous() if label is not None else None)


def _affine_coordinates(
    axes: Sequence[torch.Tensor],
    matrix: np.ndarray,
    centre: Sequence[float],
    scale: np.ndarray,
    shift: np.ndarray,
    displacement: torch.Tensor | None = None,
) -> torch.Tensor:
    """``((offset + displacement) @ matrix.T + centre) * scale + shift`` for every patch voxel,
    as an ``(N, d)`` tensor. ``axes`` are the per-axis patch offsets (voxels from the patch
    centre); the affine part is a broadcast sum of one small term per axis (much cheaper
    than a matrix product over all voxels); ``displacement`` ``(*patch, d)`` is optional."""
    linear = np.asarray(scale, dtype=np.float64)[:, None] * matrix  # row: output coordinate
    bias = torch.as_tensor(
        np.asarray(scale, dtype=np.float64) * np.asarray(centre, dtype=np.float64) + shift, dtype=torch.float32
    )
    dims = len(axes)
    terms = []
    for axis, values in enumerate(axes):
        shape = [1] * dims + [dims]
        shape[axis] = values.numel()
        terms.append((values[:, None] * torch.as_tensor(linear[:, axis], dtype=torch.float32)[None, :]).view(shape))
    partial = terms[0] + bias
    for term in terms[1:-1]:
        partial = partial + term
    coords = partial + terms[-1]
    if displacement is not None:
        coords = coords + displacement @ torch.as_tensor(linear.T, dtype=torch.float32)
    return coords.reshape(-1, dims)


def _sample_2d(image, label, axes, matrix, centre, patch_size, displacement=None):
    """Bilinear (image) and nearest (label) sampling of ``(C, X, Y)`` crops with grid_sample."""
    sizes = np.array([max(n - 1, 1) for n in image.shape[1:]], dtype=np.float64)
    grid = _affine_coordinates(axes, matrix, centre, 2.0 / sizes, np.full(2, -1.0), displacement)
    grid = grid.flip(-1).view(1, *patch_size, 2)  # grid_sample wants (x = last axis, y)
    out = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    out_label = None
    if label is not None:
        out_label = F.grid_sample(label[None], grid, mode="nearest", padding_mode="border", align_corners=True)[0]
    return out, out_label


def sample_3d(image, label, axes, matrix, centre, patch_size, displacement=None):
    """Trilinear (image) and nearest (label) sampling of ``(C, X, Y, Z)`` crops at
    ``centre + matrix @ offset`` (voxels), through torch's vectorised **2D** ``grid_sample``
    (several times faster on CPU than its 3D kernel): the crop is viewed as a 2D image of
    ``X * Y`` rows and ``Z`` columns, each output point is sampled bilinearly in (Y, Z) on
    the two neighbouring X-slices and the two results are blended linearly in X (exactly
    trilinear interpolation); labels take the nearest X-slice and nearest (Y, Z). The crop
    must contain every sampled position (:meth:`Augmenter.source_extent`). Row coordinates reach
    ``X * Y``, so float32 limits their precision to about ``X * Y * 6e-8`` voxel (1e-3 voxel for a
    130^3 crop).

    Args:
        image: float tensor ``(C, X, Y, Z)``, the crop.
        label: float tensor ``(1, X, Y, Z)`` on the same grid, or ``None``.
        axes: three 1D tensors, the output voxels' offsets from the patch centre along each axis (voxels).
        matrix: 3 x 3 array mapping an output offset to a crop offset (rotation and scaling).
        centre: the patch centre in crop voxel coordinates ``(x, y, z)``.
        patch_size: output shape ``(X', Y', Z')`` (voxels).
        displacement: optional elastic displacement ``(X', Y', Z', 3)`` (voxels), added to the output offsets
            before ``matrix`` applies.

    Returns:
        ``(patch, label_patch)``: ``(C, X', Y', Z')`` and ``(1, X', Y', Z')`` (``None`` without a label).
    """
    channels, nx, ny, nz = image.shape
    row_scale = 2.0 / max(nx * ny - 1, 1)
    column_scale = 2.0 / max(nz - 1, 1)
    # columns: x (voxels), y * row_scale - 1, z * column_scale - 1
    coords = _affine_coordinates(
        axes, matrix, centre, np.array([1.0, row_scale, column_scale]), np.array([0.0, -1.0, -1.0]), displacement
    )
    # the crop holds every sampled position (source_extent); clamping x keeps float rounding
    # from ever reaching a neighbouring slice's rows
    x = coords[:, 0].clamp_(0.0, nx - 1.0)
    slice_step = ny * row_scale
    grid = torch.empty(coords.shape[0], 2)
    grid[:, 0] = coords[:, 2]
    grid_view = grid.view(1, -1, patch_size[-1], 2)
    out_label = None
    if label is not None:
        torch.add(coords[:, 1], x.round(), alpha=slice_step, out=grid[:, 1])
        out_label = F.grid_sample(label.reshape(1, 1, nx * ny, nz), grid_view, mode="nearest", align_corners=True)
        out_label = out_label.view(1, *patch_size)
    flat = image.reshape(1, channels, nx * ny, nz)
    lower = x.floor().clamp_(max=max(nx - 2, 0))
    weight = (x - lower).view(1, 1, -1, patch_size[-1])
    torch.add(coords[:, 1], lower, alpha=slice_step, out=grid[:, 1])
    below = F.grid_sample(flat, grid_view, mode="bilinear", align_corners=True)
    grid[:, 1] += slice_step
    above = F.grid_sample(flat, grid_view, mode="bilinear", align_corners=True)
    out = torch.lerp(below, above, weight).view(channels, *patch_size)
    return out, out_label


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(C, *spatial)`` with ``sigma`` voxels (replicate borders,
    kernel truncated at 3 sigma), as weighted sums of shifted views (faster on CPU than
    convolutions with one-dimensional kernels)."""
    if sigma <= 0:
        return image
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).tolist()
    out = image
    for axis in range(1, image.ndim):
        n = out.shape[axis]
        edge = [radius if a == axis else -1 for a in range(out.ndim)]
        padded = torch.cat([out.narrow(axis, 0, 1).expand(*edge), out, out.narrow(axis, n - 1, 1).expand(*edge)], axis)
        blurred = padded.narrow(axis, radius, n) * kernel[radius]
        for shift in range(1, radius + 1):
            blurred.add_(
                padded.narrow(axis, radius - shift, n) + padded.narrow(axis, radius + shift, n),
                alpha=kernel[radius + shift],
            )
        out = blurred
    return out


def simulate_low_resolution(image: torch.Tensor, zoom: float) -> torch.Tensor:
    """Downsample ``(C, *spatial)`` by ``zoom`` (nearest) and upsample back (linear)."""
    size = image.shape[1:]
    small = [max(1, int(round(n * zoom))) for n in size]
    mode = "trilinear" if len(size) == 3 else "bilinear"
    down = F.interpolate(image[None], size=small, mode="nearest-exact")
    return F.interpolate(down, size=tuple(size), mode=mode, align_corners=False)[0]


def adjust_gamma(image: torch.Tensor, gamma: float, invert: bool, retain_stats: bool) -> torch.Tensor:
    """Per channel: rescale to [0, 1], raise to ``gamma``, rescale back (on ``-image`` when
    ``invert``); ``retain_stats`` restores each channel's mean and std."""
    reduce = tuple(range(1, image.ndim))
    if invert:
        image = -image
    mean, std = image.mean(dim=reduce, keepdim=True), image.std(dim=reduce, keepdim=True)
    low = image.amin(dim=reduce, keepdim=True)
    span = (image.amax(dim=reduce, keepdim=True) - low).clamp_min(1e-7)
    image = ((image - low) / span).clamp_min(0).pow(gamma) * span + low
    if retain_stats:
        new_mean, new_std = image.mean(dim=reduce, keepdim=True), image.std(dim=reduce, keepdim=True)
        image = (image - new_mean) / new_std.clamp_min(1e-7) * std + mean
    return -image if invert else image
