"""metrics.csv has one schema, one writer and one reader (medseg.evaluation.metrics_table), used by evaluate,
evaluate compare and the grand-challenge submission."""

from __future__ import annotations

import math

import pytest

from medseg.errors import InvalidArgumentError
from medseg.evaluation import compare
from medseg.evaluation.metrics_table import (
    COLUMNS,
    MetricsWriter,
    read_metrics_csv,
    read_metrics_frame,
    write_metrics_csv,
)
from medseg.submission.metrics_json import metrics_json_from_rows

ROWS = [
    {"case": "a", "label": "liver", "region": "all", "metric": "dice", "value": 0.8125, "flag": ""},
    {"case": "a", "label": "liver", "region": "all", "metric": "hd95", "value": math.nan, "flag": "pred_empty"},
    {"case": "b", "label": "", "region": "", "metric": "error", "value": math.nan, "flag": "b: unreadable"},
]


def test_writer_and_reader_round_trip(tmp_path):
    writer = MetricsWriter(tmp_path / "streamed.csv")
    writer.write(ROWS[:1])
    writer.write(ROWS[1:])
    writer.close()
    write_metrics_csv(tmp_path / "final.csv", ROWS)
    assert (tmp_path / "streamed.csv").read_text(encoding="utf-8") == (tmp_path / "final.csv").read_text(
        encoding="utf-8"
    )
    assert (tmp_path / "final.csv").read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    rows = read_metrics_csv(tmp_path / "final.csv")
    assert [r["value"] for r in rows][0] == 0.8125 and math.isnan(rows[1]["value"])
    assert [{k: v for k, v in r.items() if k != "value"} for r in rows] == [
        {k: v for k, v in r.items() if k != "value"} for r in ROWS
    ]
    frame = read_metrics_frame(tmp_path / "final.csv")  # error rows dropped
    assert list(frame.columns) == list(COLUMNS) and list(frame["metric"]) == ["dice", "hd95"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("case,label,metric,value\na,1,dice,1\n", "missing column(s) region"),
        ("case,label,region,metric,value,flag\na,1,all,dice,high,\n", "line 2: value 'high' is not a number"),
        (
            "case,label,region,metric,value,flag\na,1,all,dice,1,\na,1,all,dice,0.5,\n",
            "line 3: a/1/all/dice appears twice",
        ),
        ("case,label,region,metric,value,flag\n,1,all,dice,1,\n", "line 2: empty case or metric"),
    ],
)
def test_reader_names_the_file_and_line(tmp_path, text, message):
    (tmp_path / "metrics.csv").write_text(text, encoding="utf-8")
    with pytest.raises(InvalidArgumentError, match="metrics.csv: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        read_metrics_csv(tmp_path / "metrics.csv")


def test_optional_flag_and_empty_region(tmp_path):
    (tmp_path / "m.csv").write_text("case,label,region,metric,value\na,1,,dice,\n", encoding="utf-8")
    assert read_metrics_csv(tmp_path / "m.csv")[0]["region"] == "all"
    assert read_metrics_csv(tmp_path / "m.csv")[0]["flag"] == ""


def test_compare_and_metrics_json_read_it_alike(tmp_path):
    write_metrics_csv(tmp_path / "a.csv", ROWS)
    write_metrics_csv(tmp_path / "b.csv", [{**ROWS[0], "value": 0.9}, *ROWS[1:]])
    table = compare(tmp_path / "a.csv", tmp_path / "b.csv")
    assert table.loc[0, "mean_diff"] == pytest.approx(0.0875)
    content = metrics_json_from_rows(read_metrics_csv(tmp_path / "a.csv"))
    assert set(content["case"]) == {"a"}  # the failed case b has no metrics (the submission check names it)
    assert content["case"]["a"]["liver"]["all"] == {"dice": 0.8125, "hd95": None}
