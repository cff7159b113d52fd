"""``medseg segment``: classical segmentation baselines on one volume.

Only the standard library is imported at module level (``medseg.classical`` is imported in
:func:`run`), so ``medseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json

METHOD_NAMES = ("threshold", "otsu", "bht", "kmeans", "region-grow", "split-merge", "edges", "lung-ct")

DESCRIPTION = """\
Segment one volume with a classical, training-free method and write the result on the
input's voxel grid (same shape and affine):

  medseg segment --method METHOD INPUT OUT [options]

INPUT is a NIfTI/NRRD/MHA file or a DICOM series folder; CT is read in Hounsfield units.
OUT is .nii.gz/.nii/.nrrd/.mha. Label maps are uint8 (classes from the darkest: 0, 1, ...);
edges writes a float32 image (intensity units per mm).

Methods (and their options):
  threshold    --thresholds T1 [T2 ...]  labels 0..n by thresholds (HU for CT), or
               --range LOW HIGH (repeat)  label 1, 2, ... per closed range, 0 elsewhere
  otsu         [--classes N] [--bins N]   Otsu threshold(s), N >= 2 classes (SimpleITK)
  bht          [--bins N]                 balanced histogram thresholding, 2 classes
  kmeans       [--k N] [--seed N] [--position-scale-mm MM] [--sample-size N]
               k-means on intensity (+ position), labels 0..k-1 by mean intensity (SciPy)
  region-grow  --seed-voxel I J K | --seed-mm X Y Z (repeatable; mm are RAS+ world)
               --criterion tolerance --tolerance T | --lower L --upper U
               --criterion confidence [--multiplier M] [--iterations N] [--radius R]   (ITK)
  split-merge  [--max-std S] [--merge-tolerance T] [--min-region-voxels N]
               octree split-and-merge, regions 1..n by mean intensity
  edges        3D Sobel gradient magnitude (spacing-aware), float32 image
  lung-ct      [--air-hu HU|otsu] [--airway-hu HU] [--keep-airways] [--bronchus-depth-mm MM]
               [--closing-mm MM] [--min-lung-ml ML]
               lung mask of a chest CT: 1 patient-left lung, 2 patient-right lung"""

EPILOG = """\
examples:
  medseg segment --method lung-ct chest_ct/ lungs.nii.gz
  medseg segment --method threshold ct.nii.gz bands.nii.gz --thresholds -500 -100 300
  medseg segment --method threshold ct.nii.gz bone.nii.gz --range 300 3071
  medseg segment --method otsu mri.nii.gz otsu3.nii.gz --classes 3
  medseg segment --method kmeans mri.nii.gz km.nii.gz --k 4 --seed 1
  medseg segment --method region-grow ct.nii.gz liver.nii.gz --seed-mm 60 -20 -150 --tolerance 60
  medseg segment --method edges ct.nii.gz gradient.nii.gz"""

#: CLI destination -> (methods it applies to, keyword of the Python function)
OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "thresholds": (("threshold",), "thresholds"),
    "ranges": (("threshold",), "ranges"),
    "classes": (("otsu",), "classes"),
    "bins": (("otsu", "bht"), "bins"),
    "k": (("kmeans",), "k"),
    "random_seed": (("kmeans",), "seed"),
    "position_scale_mm": (("kmeans",), "position_scale_mm"),
    "sample_size": (("kmeans",), "sample_size"),
    "criterion": (("region-grow",), "criterion"),
    "tolerance": (("region-grow",), "tolerance"),
    "lower": (("region-grow",), "lower"),
    "upper": (("region-grow",), "upper"),
    "multiplier": (("region-grow",), "multiplier"),
    "iterations": (("region-grow",), "iterations"),
    "radius": (("region-grow",), "neighbourhood_radius"),
    "max_std": (("split-merge",), "max_std"),
    "merge_tolerance": (("split-merge",), "merge_tolerance"),
    "min_region_voxels": (("split-merge",), "min_region_voxels"),
    "air_hu": (("lung-ct",), "air_threshold_hu"),
    "airway_hu": (("lung-ct",), "airway_hu"),
    "bronchus_depth_mm": (("lung-ct",), "bronchus_depth_mm"),
    "closing_mm": (("lung-ct",), "closing_radius_mm"),
    "min_lung_ml": (("lung-ct",), "min_lung_ml"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``medseg segment``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument("--method", required=True, choices=METHOD_NAMES, metavar="METHOD", help=", ".join(METHOD_NAMES))
    parser.add_argument("input", metavar="INPUT", help="NIfTI/NRRD/MHA file or DICOM series folder")
    parser.add_argument("output", metavar="OUT", help="output file: .nii.gz, .nii, .nrrd, .mha or .mhd")
    read = parser.add_argument_group("reading")
    read.add_argument("--series", metavar="UID", help="DICOM SeriesInstanceUID when a folder holds several series")
    read.add_argument("--frame", type=int, metavar="N", help="index along the 4th axis of a 4D file")
    read.add_argument(
        "--json", action="store_true", help="print what the method chose (thresholds, volumes, ...) as JSON"
    )

    group = parser.add_argument_group("threshold")
    group.add_argument("--thresholds", nargs="+", type=float, metavar="T", help="increasing thresholds: labels 0..n")
    group.add_argument(
        "--range",
        dest="ranges",
        nargs=2,
        type=float,
        action="append",
        metavar=("LOW", "HIGH"),
        help="a labelled closed range (repeatable)",
    )
    group = parser.add_argument_group("otsu / bht")
    group.add_argument("--classes", type=int, metavar="N", help="otsu: number of classes (default 2)")
    group.add_argument("--bins", type=int, metavar="N", help="histogram bins (default 256)")
    group = parser.add_argument_group("kmeans")
    group.add_argument("--k", type=int, metavar="N", help="number of classes (default 3)")
    group.add_argument("--seed", dest="random_seed", type=int, metavar="N", help="random seed (default 0)")
    group.add_argument(
        "--position-scale-mm", type=float, metavar="MM", help="add position: MM of distance weigh one intensity std"
    )
    group.add_argument("--sample-size", type=int, metavar="N", help="voxels used to fit the centroids (default 200000)")
    group = parser.add_argument_group("region-grow")
    group.add_argument(
        "--seed-voxel",
        nargs=3,
        type=int,
        action="append",
        metavar=("I", "J", "K"),
        help="seed voxel index (repeatable)",
    )
    group.add_argument(
        "--seed-mm",
        nargs=3,
        type=float,
        action="append",
        metavar=("X", "Y", "Z"),
        help="seed in RAS+ world mm (repeatable)",
    )
    group.add_argument("--criterion", choices=("tolerance", "confidence"), help="growing criterion (default tolerance)")
    group.add_argument("--tolerance", type=float, metavar="T", help="interval: seed mean +/- T")
    group.add_argument("--lower", type=float, metavar="L", help="lower end of the interval")
    group.add_argument("--upper", type=float, metavar="U", help="upper end of the interval")
    group.add_argument("--multiplier", type=float, metavar="M", help="confidence: mean +/- M std (default 2.5)")
    group.add_argument("--iterations", type=int, metavar="N", help="confidence: re-estimations (default 4)")
    group.add_argument(
        "--radius", type=int, metavar="R", help="confidence: seed neighbourhood radius in voxels (default 1)"
    )
    group = parser.add_argument_group("split-merge")
    group.add_argument("--max-std", type=float, metavar="S", help="homogeneous block: std <= S (default 3 x noise)")
    group.add_argument(
        "--merge-tolerance", type=float, metavar="T", help="merge regions whose means differ <= T (default max-std)"
    )
    group.add_argument("--min-region-voxels", type=int, metavar="N", help="absorb smaller regions (default 8)")
    group = parser.add_argument_group("lung-ct")
    group.add_argument("--air-hu", metavar="HU", help="air threshold in HU or 'otsu' (default -320)")
    group.add_argument("--airway-hu", type=float, metavar="HU", help="airway lumen threshold (default -950)")
    group.add_argument("--keep-airways", action="store_true", help="do not remove the trachea and main bronchi")
    group.add_argument(
        "--bronchus-depth-mm", type=float, metavar="MM", help="remove airways this far below the carina (default 40)"
    )
    group.add_argument("--closing-mm", type=float, metavar="MM", help="closing ball radius (default 3; 0: none)")
    group.add_argument(
        "--min-lung-ml", type=float, metavar="ML", help="smallest air component taken as a lung (default 20)"
    )


def run(args: argparse.Namespace) -> int:
    """Read INPUT, run the method, write OUT; prints a summary (or JSON with ``--json``)."""
    from medseg.classical import IMAGE_METHODS, segment
    from medseg.io import ensure_writable_file, load_volume, save_volume

    options = _method_options(args)
    ensure_writable_file(args.output)  # before the computation, which can take a while
    volume = load_volume(args.input, frame=args.frame, series_uid=args.series)
    result = segment(volume, args.method, **options)
    if len(result.meta.get("segmentation", {}).get("lungs_missing", [])) == 2:
        from medseg.errors import MedsegError

        raise MedsegError(f"{args.input}: lung-ct found no lung (see the warning above); {args.output} not written")
    written = save_volume(result, args.output, label=args.method not in IMAGE_METHODS)
    details = result.meta.get("segmentation", {})
    if args.json:
        print(json.dumps({"output": str(written), **details}, indent=2, default=_jsonable))
        return 0
    print(
        f"wrote {written}: {args.method} on {volume.shape} voxels, spacing "
        f"{tuple(round(float(s), 4) for s in volume.spacing_mm)} mm"
    )
    for line in _summary_lines(result, args.method in IMAGE_METHODS):
        print(f"  {line}")
    return 0


def _method_options(args: argparse.Namespace) -> dict:
    """Keyword options for the chosen method; options that belong to another method are an error."""
    from medseg.errors import InvalidArgumentError

    options: dict = {}
    for dest, (methods, keyword) in OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if args.method not in methods:
            flag = "--" + ("seed" if dest == "random_seed" else "range" if dest == "ranges" else dest.replace("_", "-"))
            raise InvalidArgumentError(
                f"{flag} does not apply to --method {args.method} (it is for {', '.join(methods)})"
            )
        options[keyword] = value
    if args.method == "lung-ct":
        if args.keep_airways:
            options["remove_airways"] = False
        if "air_threshold_hu" in options and str(options["air_threshold_hu"]).lower() != "otsu":
            try:
                options["air_threshold_hu"] = float(options["air_threshold_hu"])
            except ValueError:
                raise InvalidArgumentError(
                    f"--air-hu must be a number of HU or 'otsu', got {options['air_threshold_hu']!r}"
                ) from None
    elif args.keep_airways:
        raise InvalidArgumentError(f"--keep-airways does not apply to --method {args.method} (it is for lung-ct)")
    seeds_voxel, seeds_mm = args.seed_voxel, args.seed_mm
    if args.method == "region-grow":
        if bool(seeds_voxel) == bool(seeds_mm):
            raise InvalidArgumentError(
                "region-grow needs seeds: give --seed-voxel I J K or --seed-mm X Y Z (one kind, repeatable)"
            )
        options["seeds"] = seeds_voxel or seeds_mm
        options["seeds_in"] = "voxel" if seeds_voxel else "world"
    elif seeds_voxel or seeds_mm:
        raise InvalidArgumentError(
            f"--seed-voxel/--seed-mm do not apply to --method {args.method} (they are for region-grow)"
        )
    return options


def _summary_lines(result, is_image: bool) -> list[str]:
    import numpy as np

    details = dict(result.meta.get("segmentation", {}))
    details.pop("method", None)
    lines = []
    if is_image:
        values = result.array
        lines.append(f"values {float(values.min()):.4g} .. {float(values.max()):.4g} (mean {float(values.mean()):.4g})")
    else:
        counts = np.bincount(result.array.ravel())
        voxel_ml = result.voxel_volume_ml
        present = [(label, int(n)) for label, n in enumerate(counts) if n]
        shown = present[:12]
        lines.append("label: voxels (ml)  " + ", ".join(f"{label}: {n} ({n * voxel_ml:.4g})" for label, n in shown))
        if len(present) > len(shown):
            lines.append(f"... {len(present) - len(shown)} more labels")
    for key, value in details.items():
        if isinstance(value, list) and len(value) > 8:
            value = f"[{', '.join(_short(v) for v in value[:8])}, ... ({len(value)} values)]"
        lines.append(f"{key}: {_short(value)}")
    return lines


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
