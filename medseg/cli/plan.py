"""``medseg plan``: fingerprint a dataset and write its preprocessing / network plan (JSON)."""

from __future__ import annotations

import argparse

from medseg.cli.options import add_manifest_option, add_workers_option
from medseg.config.plan import DEFAULT_BASE_CHANNELS, Plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_manifest_option(parser, required=True)
    parser.add_argument("--out", required=True, help="plan JSON to write (e.g. PLAN.json)")
    parser.add_argument("--config", help="preprocessing config YAML (see configs/preprocessing_default.yaml)")
    add_workers_option(parser, "processes reading cases for the fingerprint")
    parser.add_argument(
        "--target-spacing",
        nargs=3,
        type=float,
        metavar=("X", "Y", "Z"),
        help="override the target spacing (mm, RAS axis order)",
    )
    parser.add_argument("--gpu-memory-gib", type=float, help="memory budget for the patch size (default 8)")
    parser.add_argument(
        "--base-channels", type=int, help=f"U-Net channels at full resolution (default {DEFAULT_BASE_CHANNELS})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the foreground intensity sampling (default 0)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from medseg.config.plan import save_plan
    from medseg.data.config import load_preprocessing_config
    from medseg.data.manifest import load_manifest
    from medseg.data.planning import plan_dataset
    from medseg.io import ensure_writable_file

    ensure_writable_file(args.out)
    manifest = load_manifest(args.manifest)
    config = load_preprocessing_config(args.config)  # the command-line overrides below are validated by replace()
    if args.target_spacing:
        config = replace(config, target_spacing_mm=tuple(args.target_spacing))
    network = {"gpu_memory_gib": args.gpu_memory_gib, "base_channels": args.base_channels}
    config = replace(config, network=replace(config.network, **{k: v for k, v in network.items() if v is not None}))
    plan = plan_dataset(manifest, config, workers=args.workers, progress=not args.quiet, seed=args.seed)
    path = save_plan(plan, args.out)
    print(summary_lines(plan))
    print(f"wrote {path}")
    return 0


def summary_lines(plan: Plan) -> str:
    """A few human-readable lines about a plan."""
    pre, fp = plan.preprocessing, plan.fingerprint
    kind = "CT" if pre.ct else plan.dataset.modality or "non-CT"
    if pre.ct_channels is not None:  # channels of different kinds, e.g. CT + PET
        kind = "channels " + " + ".join("CT" if is_ct else "non-CT" for is_ct in pre.ct_channels)
    lines = [
        f"dataset {plan.dataset.name}: {fp['n_cases']} cases, {kind}, "
        f"original orientations {', '.join(fp['orientations_original'])}",
        f"median spacing {fp['spacing_mm']['median']} mm (RAS order) -> target {pre.target_spacing_mm} mm "
        f"({'file voxel' if pre.orientation == 'none' else pre.orientation} axis order)"
        + (f", anisotropic: axis {pre.separate_z_axis} resampled separately" if pre.anisotropic else ""),
        "normalisation: "
        + "; ".join(
            f"channel {n.channel} {n.scheme}"
            + (f" clip {n.clip} mean {n.mean:.4g} std {n.std:.4g}" if n.scheme == "ct" else "")
            for n in pre.normalization
        ),
    ]
    for name, cfg in plan.configurations.items():
        extra = f", slices across axis {cfg.slice_axis}" if cfg.slice_axis is not None else ""
        lines.append(
            f"{name}: patch {cfg.patch_size} batch {cfg.batch_size} ({len(cfg.strides)} stages, "
            f"~{cfg.estimated_memory_gib} GiB estimated{extra})"
        )
    classes = ", ".join(
        f"{c['name']} {c['fraction_of_all'] * 100:.3g}%" for v, c in fp["classes"].items() if v != "0" and c["voxels"]
    )
    if classes:
        lines.append(f"class voxel fractions: {classes}")
    return "\n".join(lines)
