"""``cad2scan report``: Markdown + PNG plots from experiment and demo results."""

import json
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cad2scan.cli import main  # noqa: E402
from cad2scan.errors import DataFormatError  # noqa: E402
from cad2scan.eval.metrics import EvalAccumulator  # noqa: E402
from cad2scan.eval.tables import write_results_json  # noqa: E402
from cad2scan.io.predictions import class_colors  # noqa: E402
from cad2scan.report import load_results_table, target_class_colors, write_report  # noqa: E402

CLASSES = ["chair", "table", "sofa"]


def _results(methods, seed=0, drop_sofa_for=()):
    """EvalResults (with PR curves) of random scores whose quality grows with the method's position."""
    rng = np.random.default_rng(seed)
    results = {}
    for strength, method in enumerate(methods):
        labels = rng.integers(0, 4, 3000)
        if method in drop_sofa_for:
            labels[labels == 2] = 3
        scores = rng.random((3000, 4))
        scores[np.arange(3000), labels] += 0.3 * (strength + 1)
        accumulator = EvalAccumulator()
        accumulator.add(scores / scores.sum(axis=1, keepdims=True), labels)
        results[method] = accumulator.compute(CLASSES + ["background"], [0, 1, 2])
    return results


def _experiment_folder(root, table="table5", rows=("pda_fa", "no_crop"), paper=None):
    paper = paper or {"pda_fa": {"AmAP": 46.08, "source": "Table 1"}}
    results = _results(rows)
    meta = {"table": table, "title": f"Table {table[-1]}: ablations", "data": "demo", "smoke": True, "seed": 1,
            "total_s": 42.5, "reference_data": "ScanNet v2",
            "rows": {row: {"preset": f"ablations/{row}", "label": f"label of {row}", "seed": 1, "train_s": 12.25 + i,
                           "eval_s": 3.5, "steps": 2, "AmAP": results[row].amap, "mIoU": results[row].miou,
                           "paper": paper.get(row)} for i, row in enumerate(rows)}}
    (root / "results").mkdir(parents=True, exist_ok=True)
    write_results_json(root / "results" / f"{table}.json", results, meta=meta)
    return results


def _demo_folder(root, with_curves=True):
    results = _results(["baseline", "pda", "pda_fa"], seed=3, drop_sofa_for=("baseline", "pda", "pda_fa"))
    if not with_curves:
        for result in results.values():
            result.pr_curves = {}
    root.mkdir(parents=True, exist_ok=True)
    meta = {"seed": 0, "smoke": False, "timings": {"generate_s": 4.0, "baseline_train_s": 199.0, "pda_train_s": 255.0,
                                                   "pda_fa_train_s": 266.0, "total_s": 745.0},
            "eval_scenes": ["scene0001_00"], "config": {}}
    write_results_json(root / "results.json", results, meta=meta)
    return results


def _png_shape(path):
    return mpimg.imread(path, format="png").shape


def test_report_of_an_experiment_lists_every_row_with_the_paper_numbers_seeds_and_wall_clock(tmp_path):
    results = _experiment_folder(tmp_path)
    info = write_report(tmp_path)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert info["report"] == str(tmp_path / "report" / "report.md") and info["skipped"] == []
    assert "## Table 5: ablations (`table5`)" in markdown
    amap = results["pda_fa"].amap
    assert f"| pda_fa | label of pda_fa | {amap:.2f} | {results['pda_fa'].miou:.2f} | 46.08 (Table 1) | " \
           f"{amap - 46.08:+.2f} | 1 | 12.2 | 3.5 |" in markdown
    assert "| no_crop | label of no_crop |" in markdown and "| 1 | 13.2 | 3.5 |" in markdown
    assert "paper AmAP (ScanNet v2)" in markdown and "total wall-clock 42.5 s" in markdown
    assert "| paper pda_fa (reference) | - | - | - | 46.08 |" in markdown  # per-class table, paper row first
    assert f"| {results['no_crop'].ap['chair']:.2f} |" in markdown
    for name in ("table5_amap.png", "table5_per_class_ap.png", "table5_pr_curves.png"):
        assert f"]({name})" in markdown
        shape = _png_shape(tmp_path / "report" / name)
        assert len(shape) == 3 and shape[0] > 100 and shape[1] > 100
    assert sorted(info["plots"]) == sorted(["table5_amap.png", "table5_per_class_ap.png", "table5_pr_curves.png"])


def test_per_class_plot_and_pr_panels_use_the_render_class_colours(tmp_path):
    _experiment_folder(tmp_path)
    write_report(tmp_path)
    expected = np.round(target_class_colors(3) * 255).astype(np.uint8)
    np.testing.assert_array_equal(expected, class_colors(12)[:3])  # same colour per class index as the PLYs
    image = np.round(mpimg.imread(tmp_path / "report" / "table5_pr_curves.png")[..., :3] * 255).astype(int)
    # class names sit on a translucent patch of their colour: alpha 0.45 over white
    blended = np.round(0.45 * expected + 0.55 * 255).astype(int)
    for colour in blended:
        assert (np.abs(image - colour).max(axis=2) <= 2).any()


def test_report_of_a_demo_results_json(tmp_path):
    results = _demo_folder(tmp_path / "demo")
    info = write_report(tmp_path / "demo", tmp_path / "out")
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert info["tables"] == ["results"] and "`results.json`" in markdown
    assert "Demo: baseline vs PDA vs PDA + FA" in markdown and "total wall-clock 745.0 s" in markdown
    assert f"| pda_fa | PDA + FA (full method) | {results['pda_fa'].amap:.2f} |" in markdown
    assert "| 0 | 266.0 | - |" in markdown  # seed, train s, no eval time in demo results
    baseline = results["baseline"]
    # sofa is absent from the ground truth: '-' in its column, left out of AmAP
    assert (f"| baseline | {baseline.ap['chair']:.2f} | {baseline.ap['table']:.2f} | - | "
            f"{baseline.amap:.2f} |") in markdown
    assert all((tmp_path / "out" / name).is_file() for name in info["plots"])
    assert len(info["plots"]) == 3


def test_old_results_without_pr_curves_skip_that_plot_with_a_note(tmp_path):
    _demo_folder(tmp_path, with_curves=False)
    document = json.loads((tmp_path / "results.json").read_text())
    assert "pr_curves" not in document
    info = write_report(tmp_path)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert info["skipped"] == ["results.json: no precision-recall curves stored; PR plot skipped"]
    assert "Precision-recall curves: not in this results file" in markdown
    assert not (tmp_path / "report" / "results_pr_curves.png").exists()
    assert (tmp_path / "report" / "results_amap.png").is_file()


def test_the_same_input_gives_the_same_markdown_wherever_it_lies(tmp_path):
    _experiment_folder(tmp_path / "a")
    _demo_folder(tmp_path / "a")  # one folder holding both a demo and an experiment
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    write_report(tmp_path / "a")
    write_report(tmp_path / "b", tmp_path / "elsewhere")
    first = (tmp_path / "a" / "report" / "report.md").read_text()
    assert first == (tmp_path / "elsewhere" / "report.md").read_text()
    assert first.index("`results.json`") < first.index("`results/table5.json`")
    write_report(tmp_path / "a")
    assert (tmp_path / "a" / "report" / "report.md").read_text() == first


def test_paper_markers_are_read_only_where_the_paper_has_a_number(tmp_path):
    _experiment_folder(tmp_path)
    table = load_results_table(tmp_path / "results" / "table5.json")
    assert [(r.name, r.paper_amap) for r in table.rows] == [("pda_fa", 46.08), ("no_crop", None)]
    assert table.class_names == CLASSES and table.pr_curves is not None


def test_report_command_writes_the_report_and_bad_folders_are_clear_errors(tmp_path, capsys):
    _experiment_folder(tmp_path / "exp")
    assert main(["report", str(tmp_path / "exp"), "--out", str(tmp_path / "rep")]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "rep" / "report.md").is_file()
    assert main(["report", str(tmp_path / "empty_missing")]) == 2
    assert "no such results folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no results found"):
        write_report(tmp_path / "empty")
    (tmp_path / "bad.json").write_text("{\"rows\": []}")
    with pytest.raises(DataFormatError, match="not a cad2scan results file"):
        write_report(tmp_path / "bad.json")
