"""``medseg quantify``: clinical indices (cardiac function, lung volume and density) of label maps without a
reference; and the ``--indices`` / ``--roles`` / ``--images`` options it shares with ``medseg evaluate``.

Examples::

    medseg quantify --seg predictions/ --indices cardiac --out indices/
    medseg quantify --seg lungs.csv --indices lung --roles lung_right=1,lung_left=2,tumour=3 --out indices/

Only the standard library is imported here; the evaluation code is imported inside ``run``.
"""

from __future__ import annotations

import argparse

EPILOG = """\
cardiac: subjects pair their ED and ES frames by case name (NAME_ED / NAME_ES, or ACDC's NAME_frameNN with the
Info.cfg beside the file); indices lv_edv, lv_esv, lv_sv, lv_ef, rv_* (ml, %) and myo_mass (g, 1.05 g/ml).
lung: lung_left/right/total volume (ml), lung_right_left_ratio; with the CT image: mean HU, %LAA-950, PD15 per
lung and both; tumour_volume with a tumour role. Values that are conventions (a missing frame, an absent
structure) are flagged in the flag column, never silently NaN. Output: OUT/indices.csv
(subject,index,unit,value,flag).
"""


def add_index_options(group, *, required: bool) -> None:
    """``--indices``, ``--roles`` and ``--images``: one definition for ``quantify`` and ``evaluate``."""
    group.add_argument("--indices", choices=("cardiac", "lung"), required=required,
                       help="clinical indices to compute: cardiac (EDV, ESV, SV, EF, myocardial mass) or lung "
                            "(volumes, mean HU, %%LAA-950, PD15, tumour volume)")  # fmt: skip
    group.add_argument("--roles", metavar="SPEC",
                       help="label value of each structure, e.g. lv=3,rv=1,myo=2 (cardiac default, ACDC's) or "
                            "lung_right=1,lung_left=2,tumour=3 (lung default: lung_left=1,lung_right=2)")  # fmt: skip
    group.add_argument("--images", metavar="DIR",
                       help="folder of the CT images (named by case; _0000 allowed), needed by lung indices when "
                            "neither a manifest's image column nor images beside the label maps give them")  # fmt: skip


def index_spec(args: argparse.Namespace):
    """The ``IndexSpec`` of ``--indices`` / ``--roles`` (None without ``--indices``)."""
    if not getattr(args, "indices", None):
        if getattr(args, "roles", None):
            from medseg.errors import InvalidArgumentError

            raise InvalidArgumentError("--roles needs --indices cardiac|lung")
        return None
    from medseg.evaluation.indices import parse_roles

    return parse_roles(args.indices, args.roles)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "--seg",
        required=True,
        metavar="DIR|MANIFEST",
        help="folder of label maps (searched recursively) or a manifest (its label column)",
    )
    parser.add_argument("--pattern", metavar="GLOB", help="only label files whose name matches, e.g. '*_gt.nii.gz'")
    add_index_options(parser, required=True)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (indices.csv)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier OUT/indices.csv")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medseg.evaluation.indices import quantify
    from medseg.evaluation.matching import find_images, find_label_maps

    spec = index_spec(args)
    seg = Path(args.seg).expanduser()
    if seg.is_dir():
        labels, images = find_label_maps(seg, args.pattern)
    else:
        from medseg.data.manifest import load_manifest

        manifest = load_manifest(seg)
        labels = {e.case_id: e.label for e in manifest.cases if e.label is not None}
        images = {e.case_id: e.image for e in manifest.cases if e.label is not None}
    if args.images:
        images.update(find_images(args.images))
    rows = quantify(spec, labels, images, args.out, progress=not args.quiet, overwrite=args.overwrite)
    _print_table(rows)
    print(
        f"{len({r['subject'] for r in rows})} subject(s) from {len(labels)} label map(s); wrote "
        f"{Path(args.out) / 'indices.csv'}"
    )
    return 0


def _print_table(rows) -> None:
    """Median and range of each index over the subjects, and how many values are flagged."""
    import math
    import statistics

    by_index: dict[str, list[dict]] = {}
    for row in rows:
        by_index.setdefault(row["index"], []).append(row)
    print(f"{'index':<24} {'unit':<4} {'median':>10} {'min':>10} {'max':>10}  n (flagged)")
    for index, group in by_index.items():
        values = [r["value"] for r in group if not math.isnan(r["value"])]
        cells = (f"{statistics.median(values):>10.4g} {min(values):>10.4g} {max(values):>10.4g}" if values
                 else f"{'-':>10} {'-':>10} {'-':>10}")  # fmt: skip
        print(f"{index:<24} {group[0]['unit']:<4} {cells}  {len(values)} ({sum(1 for r in group if r['flag'])})")
