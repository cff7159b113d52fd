"""The ``medseg`` command line: a thin layer over the Python API.

Each subcommand lives in its own module under ``medseg.cli`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; options that several commands share (the same
name and meaning everywhere) come from :mod:`medseg.cli.options`. Those modules import only the standard
library at module level, so ``medseg --help`` and every command start fast; the heavy
libraries (torch, monai, SimpleITK) are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, one-line help). Order is the order shown by ``medseg --help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("medseg.cli.demo", "the whole pipeline on built-in synthetic data: phantoms, train, predict, evaluate"),
    "inspect": ("medseg.cli.io_commands", "show geometry, intensities and labels of a volume"),
    "convert": ("medseg.cli.io_commands", "convert any supported volume to NIfTI (or NRRD/MHA)"),
    "phantom": ("medseg.cli.phantom", "write a synthetic phantom dataset (MSD/nnU-Net layout)"),
    "validate": ("medseg.cli.io_commands", "check a dataset manifest: files, geometry, label values"),
    "plan": ("medseg.cli.plan", "fingerprint a dataset and plan preprocessing and networks"),
    "preprocess": ("medseg.cli.preprocess", "preprocess a dataset into a cache for training"),
    "train": ("medseg.cli.train", "train a 3D or slice-wise 2D U-Net from a YAML config"),
    "predict": ("medseg.cli.predict", "predict scans with a trained run; outputs on each scan's exact grid"),
    "evaluate": ("medseg.cli.evaluate", "score predictions against references (per label and region)"),
    "quantify": (
        "medseg.cli.quantify",
        "clinical indices (cardiac EF and volumes, lung volume and density) of label maps",
    ),
    "segment": ("medseg.cli.segment", "classical segmentation baselines (threshold, Otsu, lung-ct, ...)"),
    "submit": ("medseg.cli.submit", "prepare and check challenge submissions"),
}


def build_parser() -> argparse.ArgumentParser:
    from medseg import __version__
    from medseg.cli.options import add_quiet_option

    parser = argparse.ArgumentParser(
        prog="medseg",
        description="3D medical image segmentation: data, models, evaluation, submissions.",
    )
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # capability not built yet
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        _command_function(module, "add", name, "arguments")(command_parser)
        add_quiet_option(command_parser)
        command_parser.set_defaults(_run=_command_function(module, "run", name))
    return parser


def _command_function(module, verb: str, command: str, suffix: str = ""):
    """``add_<command>_arguments`` / ``run_<command>`` for modules serving several commands, else
    ``add_arguments`` / ``run``."""
    specific = "_".join(filter(None, (verb, command.replace("-", "_"), suffix)))
    return getattr(module, specific, None) or getattr(module, "_".join(filter(None, (verb, suffix))))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from medseg.common.logs import configure_cli_logging
    from medseg.errors import MedsegError, describe_os_error

    configure_cli_logging(args.command, quiet=args.quiet)
    try:
        return int(args._run(args) or 0)
    except MedsegError as exc:
        print(f"medseg {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (medseg ... | head): stop quietly, like other tools
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        print(f"medseg {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"medseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
