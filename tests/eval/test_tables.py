import json
import math

import pytest

from cad2scan.eval.metrics import EvalResult
from cad2scan.eval.tables import format_markdown_table, format_table, write_results_json

CLASSES = ["bathtub", "bed", "chair"]


def _result(ap, iou=None):
    finite = [v for v in ap.values() if not math.isnan(v)]
    iou = iou or {k: 10.0 for k in ap}
    return EvalResult(ap=ap, amap=sum(finite) / len(finite), iou=iou, miou=10.0, num_points=100)


def test_format_table_has_one_aligned_row_per_method_with_two_decimals_and_dash_for_nan():
    rows = {
        "ours": _result({"bathtub": 51.234, "bed": math.nan, "chair": 70.0}),
        "source only": _result({"bathtub": 5.0, "bed": 12.5, "chair": 30.456}),
    }
    text = format_table(rows, CLASSES)
    lines = text.splitlines()
    assert lines[0].split() == ["method", "bathtub", "bed", "chair", "AmAP"]
    ours = next(line for line in lines if line.startswith("ours"))
    assert ours.split() == ["ours", "51.23", "-", "70.00", "60.62"]
    source = next(line for line in lines if line.startswith("source only"))
    assert source.split()[-4:] == ["5.00", "12.50", "30.46", "15.99"]
    table_lines = [lines[0], ours, source]
    assert len({len(line) for line in table_lines}) == 1  # fixed width
    # every number ends at the right edge of its column header
    for column in ("bathtub", "chair", "AmAP"):
        end = lines[0].index(column) + len(column)
        assert ours[end - 1] != " " and (end == len(ours) or ours[end] == " ")


def test_format_table_iou_metric_uses_iou_values_and_miou_column():
    rows = {"ours": _result({"bathtub": 1.0, "bed": 2.0, "chair": 3.0}, iou={"bathtub": 40.0, "chair": 60.0})}
    lines = format_table(rows, CLASSES, metric="iou").splitlines()
    assert lines[0].split()[-1] == "mIoU"
    assert lines[2].split() == ["ours", "40.00", "-", "60.00", "10.00"]
    with pytest.raises(ValueError, match="metric"):
        format_table(rows, CLASSES, metric="f1")


def test_reference_rows_come_first_and_are_marked():
    rows = {"ours": _result({"bathtub": 50.0, "bed": 40.0, "chair": 30.0})}
    reference = {"RTL (paper)": {"bathtub": 51.2, "bed": 62.0, "chair": 80.1, "AmAP": 64.43}}
    text = format_table(rows, CLASSES, reference=reference)
    lines = text.splitlines()
    ref_index = next(i for i, line in enumerate(lines) if line.startswith("RTL (paper) (reference)"))
    ours_index = next(i for i, line in enumerate(lines) if line.startswith("ours"))
    assert ref_index < ours_index
    assert lines[ref_index].split()[-4:] == ["51.20", "62.00", "80.10", "64.43"]
    assert "not measured in this run" in text


def test_dict_rows_accept_results_json_form_and_flat_form_with_computed_mean():
    rows = {
        "json form": {"AP": {"bathtub": 10.0, "bed": None, "chair": 30.0}, "AmAP": 20.0, "mIoU": 5.0},
        "flat": {"bathtub": 1.0, "chair": 3.0},
    }
    lines = format_table(rows, CLASSES).splitlines()
    assert next(line for line in lines if line.startswith("json form")).split()[-4:] == ["10.00", "-", "30.00", "20.00"]
    assert next(line for line in lines if line.startswith("flat")).split()[-4:] == ["1.00", "-", "3.00", "2.00"]


def test_markdown_table_has_the_same_cells_as_the_text_table():
    rows = {"ours": _result({"bathtub": 51.234, "bed": math.nan, "chair": 70.0})}
    reference = {"paper": {"bathtub": 1.0, "bed": 2.0, "chair": 3.0, "AmAP": 2.0}}
    markdown = format_markdown_table(rows, CLASSES, reference=reference).splitlines()
    assert markdown[0] == "| method | bathtub | bed | chair | AmAP |"
    assert set(markdown[1].replace("|", "").split()) <= {"---", "---:"}
    assert markdown[2] == "| paper (reference) | 1.00 | 2.00 | 3.00 | 2.00 |"
    assert markdown[3] == "| ours | 51.23 | - | 70.00 | 60.62 |"


def test_write_results_json_schema_with_null_for_absent_classes(tmp_path):
    path = tmp_path / "out" / "results.json"
    methods = {"ours": _result({"bathtub": 51.25, "bed": math.nan, "chair": 70.0})}
    write_results_json(path, methods, meta={"seed": 3, "note": math.nan})
    data = json.loads(path.read_text())
    assert set(data) == {"methods", "meta"}
    assert data["methods"]["ours"] == {
        "AmAP": pytest.approx(60.625),
        "AP": {"bathtub": 51.25, "bed": None, "chair": 70.0},
        "mIoU": 10.0,
    }
    assert data["meta"] == {"seed": 3, "note": None}
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_write_results_json_without_meta_has_only_methods(tmp_path):
    path = tmp_path / "results.json"
    write_results_json(path, {"a": _result({"chair": 1.0})})
    assert list(json.loads(path.read_text())) == ["methods"]
