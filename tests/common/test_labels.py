"""The one label-spec grammar and dataset.json label reader (medseg.common.labels), as evaluate and submit use it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.common.labels import label_names_from_mapping, parse_label_spec, read_dataset_json_labels
from medseg.errors import ConfigError, InvalidArgumentError
from medseg.evaluation.case import normalise_labels
from medseg.submission.formats import get_format, label_names, parse_allowed_labels


def test_grammar_values_ranges_names():
    known = {1: "rv", 2: "myo", 3: "lv"}
    assert parse_label_spec("1,2") == {1: "1", 2: "2"}
    assert parse_label_spec("0-3, 7") == {0: "0", 1: "1", 2: "2", 3: "3", 7: "7"}
    assert parse_label_spec("kidney=1,tumour=2") == {1: "kidney", 2: "tumour"}
    assert parse_label_spec("1-2,lv", known) == {1: "rv", 2: "myo", 3: "lv"}
    assert parse_label_spec("left-lung=1") == {1: "left-lung"}  # a name may contain '-'
    assert parse_label_spec([3, 1], known) == {1: "rv", 3: "lv"}
    assert parse_label_spec({"liver": 1}) == {1: "liver"}
    assert parse_label_spec(None) is None and parse_label_spec("  ") is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("3-1", "runs backwards"),
        ("spleen", "cannot read 'spleen'"),
        ("a=x", "name=value"),
        ("a=1,b=1", "named both 'a' and 'b'"),
        ("70000", "outside 0..65535"),
        ("1.5", "cannot read"),
    ],
)
def test_grammar_errors_name_the_item(spec, message):
    with pytest.raises(InvalidArgumentError, match=message):
        parse_label_spec(spec)


def test_dataset_json_both_layouts_one_reader(tmp_path):
    v2 = tmp_path / "v2" / "dataset.json"
    v2.parent.mkdir()
    v2.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2}}), encoding="utf-8")
    msd = tmp_path / "msd.json"
    msd.write_text(json.dumps({"labels": {"0": "background", "1": "liver", "2": "tumour"}}), encoding="utf-8")
    expected = {0: "background", 1: "liver", 2: "tumour"}
    assert read_dataset_json_labels(v2) == read_dataset_json_labels(msd) == expected
    assert parse_label_spec(str(v2)) == parse_label_spec(v2.parent) == expected  # a folder means its dataset.json
    for raw, message in (
        ({"a": 1.5}, "not an integer"),
        ({"a": [1, 2]}, "region"),
        ({"a": 1, "b": 1}, "used twice"),
        ({}, "non-empty mapping"),
        ({"a": -1}, "outside"),
    ):
        with pytest.raises(ConfigError, match=message):
            label_names_from_mapping(raw, "x/dataset.json")
    assert label_names_from_mapping({"a": 2.0, "b": np.int64(3)}, "x") == {2: "a", 3: "b"}
    with pytest.raises(ConfigError, match="no such dataset.json"):
        parse_label_spec(str(tmp_path / "missing.json"))


def test_evaluate_and_submit_read_one_spec_alike(tmp_path):
    """0 is background: evaluate never scores it, submit always allows it; the rest is the same set and names."""
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2}}), encoding="utf-8")
    msd = get_format("msd")
    for spec in ("0-2", "1-2", "1,2", "liver=1,tumour=2", str(dataset)):
        assert parse_allowed_labels(spec) == {0, 1, 2}
        scored = {v: n for v, n in parse_label_spec(spec).items() if v}
        assert sorted(scored) == [1, 2]
    assert label_names(msd, str(dataset)) == {0: "background", 1: "liver", 2: "tumour"}
    assert label_names(get_format("acdc"), "1-3")[2] == "left-ventricle myocardium"
    assert normalise_labels("liver=1,tumour=2") == {1: "liver", 2: "tumour"}
    with pytest.raises(InvalidArgumentError, match="uint8"):
        parse_allowed_labels("1,300")
    with pytest.raises(InvalidArgumentError, match="0 is background"):
        normalise_labels({0: "background", 1: "liver"})
