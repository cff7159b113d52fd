"""``medseg inspect``, ``medseg convert`` and ``medseg validate``."""

from __future__ import annotations

import argparse
import json

from medseg.cli.options import add_geometry_tolerance_option


def _add_read_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--series", metavar="UID", help="DICOM SeriesInstanceUID when a folder holds several series")
    parser.add_argument("--frame", type=int, help="index along the 4th axis of a 4D file")
    parser.add_argument(
        "--resample-nonuniform",
        action="store_true",
        help="DICOM: interpolate unevenly spaced slices onto a uniform grid instead of failing",
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--label", action="store_true", help="read as a label map (whole numbers >= 0)")
    kind.add_argument("--ct", action="store_true", help="require CT in Hounsfield units (fail otherwise)")
    kind.add_argument("--no-hu", action="store_true", help="leave values exactly as read (no padding-to-air mapping)")
    parser.add_argument("--clip-hu", nargs=2, type=float, metavar=("LOW", "HIGH"), help="clip CT to this HU window")


def _read(args: argparse.Namespace, path: str):
    from medseg.io import load_volume

    return load_volume(
        path,
        label=args.label,
        ct=True if args.ct else (False if args.no_hu else None),
        clip_hu=tuple(args.clip_hu) if args.clip_hu else None,
        frame=args.frame,
        series_uid=args.series,
        resample_nonuniform=args.resample_nonuniform,
    )


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="NIfTI/NRRD/MHA file or DICOM series folder")
    _add_read_options(parser)
    parser.add_argument("--json", action="store_true", help="print the description as JSON")


def run_inspect(args: argparse.Namespace) -> int:
    from medseg.io import describe_volume

    volume = _read(args, args.path)
    info = describe_volume(volume, label=True if args.label else None)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['source']}  ({info['format']})")
    print(f"  shape        {' x '.join(map(str, info['shape']))}  ({info['dtype']})")
    print(f"  spacing      {' x '.join(f'{s:g}' for s in info['spacing_mm'])} mm")
    print(f"  extent       {' x '.join(f'{s:g}' for s in info['extent_mm'])} mm")
    print(f"  origin       ({', '.join(f'{o:g}' for o in info['origin_mm'])}) mm, RAS+")
    print(f"  orientation  {info['orientation']}{'  (oblique)' if info['oblique'] else ''}")
    for key in ("modality", "series_uid", "rescale_slope", "rescale_intercept"):
        if key in info:
            print(f"  {key:<18} {info[key]}")
    if "labels" in info:
        print("  label map    value: voxels (ml)")
        for value, stats in info["labels"].items():
            print(f"    {value:>5}: {stats['voxels']:>10} ({stats['volume_ml']:g} ml)")
    if any(info.get("nonfinite", {}).values()):
        from medseg.io.describe import describe_nonfinite

        print(f"  not finite   {describe_nonfinite(info['nonfinite'])} (left out of the statistics below)")
    if "labels" not in info and info.get("intensity"):
        stats = info["intensity"]
        print(
            f"  intensity    min {stats['min']:g}, p1 {stats['p1']:g}, median {stats['median']:g}, "
            f"p99 {stats['p99']:g}, max {stats['max']:g}"
        )
        print(f"  looks like HU  {'yes' if info['looks_like_hu'] else 'no'}")
        if "hu" in info:
            print(
                f"  padding      {info['hu']['padding_voxels']} voxels below {info['hu']['air_floor_hu']:g} HU set "
                "to air"
            )
    return 0


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", help="NIfTI/NRRD/MHA file, DICOM series folder, or a DICOM RTSTRUCT file (with --reference)"
    )
    parser.add_argument("output", help="output file: .nii.gz, .nii, .nrrd, .mha or .mhd")
    _add_read_options(parser)
    rtstruct = parser.add_argument_group("RTSTRUCT import (contours rasterised onto the reference's voxel grid)")
    rtstruct.add_argument(
        "--reference",
        metavar="SCAN",
        help="the scan the contours were drawn on (NIfTI/NRRD/MHA or DICOM series; --series picks one)",
    )
    rtstruct.add_argument("--roi", nargs="+", action="extend", metavar="NAME=VALUE",
                          help="ROIs to import and their label values (names case-insensitive; a later one wins "
                               "where they "
                               "overlap); default: every ROI, numbered 1, 2, ... in file order. A JSON sidecar "
                               "(OUTPUT without suffix + .json) records the numbering")  # fmt: skip


def run_convert(args: argparse.Namespace) -> int:
    from medseg.io import ensure_writable_file, save_volume
    from medseg.io.rtstruct import is_rtstruct

    ensure_writable_file(args.output)
    if args.reference or args.roi or is_rtstruct(args.input):
        return _convert_rtstruct(args)
    volume = _read(args, args.input)
    written = save_volume(volume, args.output, label=args.label)
    print(
        f"wrote {written}: {volume.shape} voxels, spacing {tuple(round(float(s), 4) for s in volume.spacing_mm)} "
        f"mm, {volume.orientation}"
    )
    return 0


def _convert_rtstruct(args: argparse.Namespace) -> int:
    from medseg.errors import InvalidArgumentError
    from medseg.io.rtstruct import convert_rtstruct, parse_roi_values

    if not args.reference:
        raise InvalidArgumentError(
            f"{args.input}: an RTSTRUCT needs --reference SCAN (the scan its contours were drawn on)"
        )
    written, sidecar, numbering = convert_rtstruct(
        args.input, args.reference, args.output, parse_roi_values(args.roi), series_uid=args.series
    )
    print(f"wrote {written} ({', '.join(f'{name} = {value}' for name, value in numbering.items())}) and {sidecar}")
    return 0


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="dataset.json (MSD/nnU-Net), a CSV manifest or a phantom .yaml")
    add_geometry_tolerance_option(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print {manifest, n_cases, ok, problems: [{case, path, message}], notes: [...]} as JSON",
    )


def run_validate(args: argparse.Namespace) -> int:

    from medseg.data.manifest import load_manifest, validate_manifest

    manifest = load_manifest(args.manifest)
    notes: list[str] = []
    problems = validate_manifest(
        manifest, atol_mm=args.geometry_tolerance_mm, progress=not args.quiet and not args.json, notes=notes
    )
    if args.json:
        document = {
            "manifest": str(manifest.path),
            "n_cases": len(manifest),
            "ok": not problems,
            "problems": [{"case": p.case_id, "path": p.path, "message": p.message} for p in problems],
            "notes": notes,
        }
        print(json.dumps(document, indent=2))
        return 1 if problems else 0
    for problem in problems:
        print(problem)
    status = "FAILED" if problems else "OK"
    print(f"{manifest.path}: {len(manifest)} cases, {len(problems)} problem(s): {status}")
    return 1 if problems else 0
