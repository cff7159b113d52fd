"""Shared CLI options (medseg.cli.options): one name and meaning in every command, old spellings as hidden aliases."""

from __future__ import annotations

import argparse

import pytest

from medseg.cli.main import build_parser, main
from medseg.cli.options import LABELS_GRAMMAR


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found[name] = child
                found.update({f"{name} {n}": c for n, c in _subparsers(child).items()})
    return found


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if a.help != argparse.SUPPRESS}


def test_shared_options_have_one_name_dest_and_help_everywhere():
    commands = _subparsers(build_parser())
    shared = {
        "--geometry-tolerance": ({"evaluate", "validate", "submit", "submit check"}, "geometry_tolerance_mm"),
        "--labels": ({"evaluate", "submit", "submit check"}, "labels"),
        "--pred-pattern": ({"evaluate", "submit"}, "pred_pattern"),
        "--workers": ({"evaluate", "plan", "preprocess"}, "workers"),
        "--manifest": ({"evaluate", "plan", "preprocess"}, "manifest"),
        "--quiet": (set(commands), "quiet"),
    }
    for flag, (where, dest) in shared.items():
        for name in where:
            action = _options(commands[name])[flag]
            assert action.dest == dest, (name, flag)
    for name in ("evaluate", "submit", "submit check"):
        assert LABELS_GRAMMAR in _options(commands[name])["--labels"].help
    for name, parser in commands.items():  # the old spellings are never shown
        assert not {"--atol-mm", "--tolerance-mm", "--pred-glob", "--no-progress"} & set(_options(parser)), name


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["submit", "--atol-mm", "0.5", "--pred-glob", "*_p.nii.gz"],
            {"geometry_tolerance_mm": 0.5, "pred_pattern": "*_p.nii.gz"},
        ),
        (
            ["submit", "check", "x", "--format", "msd", "--images", "i", "--atol-mm", "0.2"],
            {"geometry_tolerance_mm": 0.2},
        ),
        (["submit", "check", "x", "--format", "msd", "--images", "i"], {"geometry_tolerance_mm": 1e-3, "labels": None}),
        (["submit", "check", "x", "--format", "msd", "--images", "i", "--labels", "1-3"], {"labels": "1-3"}),
        (["validate", "m.csv", "--tolerance-mm", "0.01"], {"geometry_tolerance_mm": 0.01}),
        (["evaluate", "--no-progress", "--geometry-tolerance", "0.1"], {"quiet": True, "geometry_tolerance_mm": 0.1}),
        (["evaluate", "compare", "a.csv", "b.csv", "--out", "o", "--quiet"], {"quiet": True}),
        (["evaluate", "compare", "a.csv", "b.csv", "--out", "o"], {"quiet": False}),
        (["submit", "check", "x", "--format", "msd", "--images", "i", "--quiet"], {"quiet": True}),
    ],
)
def test_new_names_and_hidden_aliases_parse_alike(argv, expected):
    args = build_parser().parse_args(argv)
    assert {key: getattr(args, key) for key in expected} == expected


def test_workers_must_be_positive(capsys):
    for command in (["evaluate"], ["plan", "--manifest", "m.csv", "--out", "p.json"]):
        with pytest.raises(SystemExit) as caught:
            main([*command, "--workers", "0"])
        assert caught.value.code == 2
        assert "--workers: must be at least 1, got 0" in capsys.readouterr().err
