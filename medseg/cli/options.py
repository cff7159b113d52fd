"""Options that several commands share: one name, one meaning and one help text each.

Commands add these with the helpers below instead of defining their own. Earlier spellings stay
accepted as hidden aliases (not shown in ``--help`` or the README): ``--atol-mm`` and ``--tolerance-mm``
for ``--geometry-tolerance``, ``--pred-glob`` for ``--pred-pattern``, ``--no-progress`` for ``--quiet``.
Only the standard library is imported here (``medseg --help`` stays fast).

``nested=True`` is for an action's parser (``evaluate compare``, ``submit check``): its default is
left out (``argparse.SUPPRESS``), so the command's own value is kept when the action does not set it.
"""

from __future__ import annotations

import argparse
from typing import Any

#: geometry tolerance in mm (origin, and each axis vector times the extent), the default of every command
DEFAULT_GEOMETRY_TOLERANCE_MM = 1e-3

LABELS_GRAMMAR = (
    "a dataset.json (or its folder), or a comma list of values (1,2), ranges (1-3), name=value (liver=1) "
    "or known label names; 0 is background"
)


def positive_int(text: str) -> int:
    """``argparse`` type: a whole number >= 1 (``--workers``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _hidden_alias(parser: Any, flag: str, dest: str, **kwargs: Any) -> None:
    """An earlier spelling of an option: accepted, never shown, never a default of its own."""
    parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def add_quiet_option(parser: argparse.ArgumentParser, nested: bool = False) -> None:
    """``--quiet`` on a command and on each of its actions (``evaluate compare``, ``submit check``), one meaning.

    ``cli/main.py`` adds it to every command; commands never define it themselves.
    """
    parser.add_argument(
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS if nested else False,
        help="no progress bars or information lines (warnings and errors still print)",
    )
    _hidden_alias(parser, "--no-progress", "quiet", action="store_true")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                add_quiet_option(child, nested=True)


def add_geometry_tolerance_option(parser: Any, nested: bool = False) -> None:
    """``--geometry-tolerance MM`` (``args.geometry_tolerance_mm``): how far two voxel grids may differ and
    still match."""
    parser.add_argument(
        "--geometry-tolerance",
        dest="geometry_tolerance_mm",
        type=float,
        metavar="MM",
        default=argparse.SUPPRESS if nested else DEFAULT_GEOMETRY_TOLERANCE_MM,
        help="voxel grids match when their shapes are equal and their origins and axis vectors times the extent "
        f"agree within MM mm (default {DEFAULT_GEOMETRY_TOLERANCE_MM:g})",
    )
    for old in ("--atol-mm", "--tolerance-mm"):
        _hidden_alias(parser, old, "geometry_tolerance_mm", type=float)


def add_labels_option(parser: Any, purpose: str, nested: bool = False) -> None:
    """``--labels SPEC`` (``args.labels``, text): the one label-spec grammar of :mod:`medseg.common.labels`."""
    parser.add_argument(
        "--labels",
        metavar="SPEC",
        default=argparse.SUPPRESS if nested else None,
        help=f"{purpose}: {LABELS_GRAMMAR}",
    )


def add_pred_options(parser: Any, folder_help: str) -> None:
    """``--pred DIR`` (predicted label maps, searched recursively) and ``--pred-pattern GLOB``
    (``args.pred_pattern``)."""
    parser.add_argument("--pred", metavar="DIR", help=f"{folder_help} (searched recursively)")
    parser.add_argument(
        "--pred-pattern",
        metavar="GLOB",
        help="only prediction files whose name matches this shell pattern, e.g. '*_pred.nii.gz' (default: all)",
    )
    _hidden_alias(parser, "--pred-glob", "pred_pattern")


def add_workers_option(parser: Any, what: str) -> None:
    """``--workers N`` (``args.workers``, at least 1): processes working in parallel."""
    parser.add_argument("--workers", type=positive_int, default=1, metavar="N", help=f"{what} (default 1)")


def add_manifest_option(parser: Any, required: bool = False, purpose: str = "") -> None:
    """``--manifest FILE``: a dataset manifest, read by :func:`medseg.data.manifest.load_manifest`."""
    parser.add_argument(
        "--manifest",
        metavar="FILE",
        required=required,
        help="dataset manifest (dataset.json, CSV or phantom YAML)" + (f" {purpose}" if purpose else ""),
    )
