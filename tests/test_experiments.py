"""The paper's tables as commands: registry, row configs, and a smoke run on tiny demo data."""

import dataclasses
import json
import shutil

import pytest

from cad2scan.classes import load_category_set
from cad2scan.cli import main
from cad2scan.config import load_config
from cad2scan.errors import ConfigError
from cad2scan.experiments import Registry, load_registry, row_config, row_dependency, row_switches, run_experiment

REGISTRY = load_registry()


def test_registry_lists_the_known_rows_and_tables():
    assert {"baseline", "pda", "pda_fa", "no_da", "no_crop", "hull_cos", "fa_k64", "fa_k128", "fa_k256",
            "fa_lambda0p1", "fa_lambda0p5", "fa_lambda4"} <= set(REGISTRY.rows)
    assert [r.name for r in REGISTRY.tables["table1"].rows] == ["baseline", "pda", "adda", "pointdan", "pda_fa",
                                                               "supervised", "supervised_ours"]
    assert {"pda_fa", "no_da", "nega_scene", "nega_models", "no_crop", "hull_cos", "fa_k64", "fa_k256",
            "fa_lambda0p1", "fa_lambda4"} == {r.name for r in REGISTRY.tables["table5"].rows}
    assert [r.name for r in REGISTRY.tables["placement"].rows] == ["pda_fa", "layout", "layout_replace"]


@pytest.mark.parametrize("row", sorted(REGISTRY.rows))
def test_every_row_preset_loads_and_inherits_the_scannet_setting(row):
    cfg = load_config(REGISTRY.rows[row].preset)
    fine_tuning = row.startswith("ft_")  # semantic segmentation of the benchmark's 20 classes
    assert cfg.data.scene_format == "scannet" and cfg.data.categories == ("scannet20" if fine_tuning else "scannet11")


@pytest.mark.parametrize("row, switches", [
    ("pda_fa", {}),
    ("baseline", {"align": {"mode": "single"}, "model": {"use_hull": False}}),
    ("no_da", {"align": {"augment": {"rotate": False, "scale": False}}}),
    ("no_crop", {"align": {"augment": {"crop": False}}}),
    ("hull_cos", {"model": {"hull": {"projection": "identity", "similarity": "cos"}}}),
    ("fa_k64", {"model": {"hull": {"num_prototypes": 64}}}),
    ("fa_k128", {}),
    ("fa_k256", {"model": {"hull": {"num_prototypes": 256}}}),
    ("fa_lambda0p1", {"model": {"hull": {"temperature": 0.1}}}),
    ("fa_lambda0p5", {}),
    ("fa_lambda4", {"model": {"hull": {"temperature": 4.0}}}),
    ("adda", {"model": {"use_hull": False, "adaptation": "adda"}}),
    ("pointdan", {"model": {"use_hull": False, "adaptation": "pointdan"}}),
    ("nega_scene", {"align": {"negatives": "scene"}}),
    ("nega_models", {"align": {"mode": "models_only"}}),
    ("layout", {"align": {"mix": {"placement": "layout"}}}),
    ("layout_replace", {"align": {"mix": {"placement": "layout", "region": "replace"}}}),
    ("supervised", {"model": {"use_hull": False}, "train": {"objective": "supervised"}}),
    ("supervised_ours", {"train": {"objective": "rtl+supervised"}}),
    ("ft_scratch_100", {"data": {"categories": "scannet20"}, "model": {"use_hull": False},
                        "train": {"objective": "supervised", "label_fraction": 1.0}}),
    ("ft_scratch_5", {"data": {"categories": "scannet20"}, "model": {"use_hull": False},
                      "train": {"objective": "supervised", "label_fraction": 0.05}}),
    ("ft_rtl_10", {"data": {"categories": "scannet20"}, "model": {"use_hull": False},
                   "train": {"objective": "supervised", "label_fraction": 0.1, "init_from": "@pda_fa"}}),
])
def test_each_ablation_switches_only_its_own_keys(row, switches):
    assert row_switches(REGISTRY.rows[row]) == switches


def test_row_switches_apply_on_top_of_the_chosen_dataset_and_survive_smoke_settings(tmp_path):
    rows = REGISTRY.rows
    s3dis = row_config(rows["baseline"], "s3dis", tmp_path, seed=3)
    assert (s3dis.data.categories, s3dis.data.eval_scenes, s3dis.align.mode) == ("s3dis4", "5", "single")
    assert s3dis.train.seed == 3 and s3dis.name == "baseline"
    demo = row_config(rows["fa_k256"], "demo", tmp_path, smoke=True, overrides=["train.lr=0.01"])
    assert demo.model.hull.num_prototypes == 256  # the row's switch beats the smoke K = 16
    assert demo.train.steps_per_epoch == 2 and demo.train.lr == 0.01
    assert demo.data.cad_root == str(tmp_path / "data" / "ModelNet")
    plain = row_config(rows["pda_fa"], "demo", tmp_path, smoke=True)
    assert plain.model.hull.num_prototypes == 16
    with pytest.raises(ConfigError, match="unknown data set"):
        row_config(rows["pda_fa"], "kitti", tmp_path)


def test_fine_tuning_rows_differ_only_in_fraction_and_initialisation_and_use_s3dis13_on_s3dis(tmp_path):
    table3 = REGISTRY.tables["table3"]
    assert table3.metric == "iou" and REGISTRY.tables["table4"].rows == table3.rows
    configs = {row.name: row_config(row, "scannet", tmp_path) for row in table3.rows}
    assert {n: (c.train.label_fraction, c.train.init_from) for n, c in configs.items()} == {
        "ft_scratch_5": (0.05, ""), "ft_scratch_10": (0.1, ""), "ft_scratch_100": (1.0, ""),
        "ft_rtl_5": (0.05, str(tmp_path / "runs" / "pda_fa" / "model.safetensors")),
        "ft_rtl_10": (0.1, str(tmp_path / "runs" / "pda_fa" / "model.safetensors")),
        "ft_rtl_100": (1.0, str(tmp_path / "runs" / "pda_fa" / "model.safetensors"))}
    plain = {n: dataclasses.replace(c, name="", train=dataclasses.replace(c.train, label_fraction=1.0, init_from=""))
             for n, c in configs.items()}
    assert len({repr(c) for c in plain.values()}) == 1  # same schedule, network and data otherwise
    s3dis = row_config(REGISTRY.rows["ft_rtl_5"], "s3dis", tmp_path)
    assert (s3dis.data.categories, s3dis.data.scene_format, s3dis.train.objective) == ("s3dis13", "s3dis", "supervised")
    assert row_config(REGISTRY.rows["ft_rtl_5"], "demo", tmp_path).data.categories == "scannet20"
    assert row_dependency(REGISTRY.rows["ft_rtl_5"], "demo", tmp_path) == "pda_fa"
    assert row_dependency(REGISTRY.rows["ft_scratch_5"], "demo", tmp_path) is None


def test_a_row_that_starts_from_itself_is_refused(tmp_path):
    row = dataclasses.replace(REGISTRY.rows["ft_rtl_5"], name="pda_fa")
    with pytest.raises(ConfigError, match="another row"):
        row_config(row, "demo", tmp_path)


def test_reference_holds_only_the_published_amap_numbers():
    numbers = {(d, r): v["AmAP"] for d, rows in REGISTRY.reference.items() for r, v in rows.items()}
    assert numbers == {("scannet", "baseline"): 10.93, ("scannet", "pda_fa"): 46.08,
                       ("s3dis", "baseline"): 15.65, ("s3dis", "pda_fa"): 55.49}
    assert REGISTRY.reference_for("demo", "pda_fa")["AmAP"] == 46.08  # the demo mimics ScanNet
    assert REGISTRY.reference_for("s3dis", "no_crop") is None


def test_resolve_accepts_tables_rows_and_presets_and_names_the_choices_otherwise():
    assert REGISTRY.resolve("no_da").rows == (REGISTRY.rows["no_da"],)
    assert REGISTRY.resolve("ablations/pda_only").rows[0].preset == "ablations/pda_only"
    with pytest.raises(ConfigError, match="table1"):
        REGISTRY.resolve("table9")


def test_experiment_list_prints_tables_and_rows(capsys):
    assert main(["experiment", "--list"]) == 0
    out = capsys.readouterr().out
    assert "table5" in out and "ablations/no_da" in out


@pytest.fixture(scope="module")
def smoke_table(tmp_path_factory):
    """``table5`` cut to two rows (one with a published number), run with --smoke on tiny demo data."""
    out = tmp_path_factory.mktemp("experiment")
    table = dataclasses.replace(REGISTRY.tables["table5"],
                                rows=(REGISTRY.rows["pda_fa"], REGISTRY.rows["no_crop"]))
    registry = Registry(REGISTRY.rows, {"table5": table}, REGISTRY.reference)
    result = run_experiment("table5", data="demo", out_dir=out, smoke=True, progress=False, registry=registry,
                            overrides=["train.num_threads=1"], seed=1)
    return out, registry, result


def test_smoke_table_writes_markdown_and_json_with_both_rows_and_the_paper_column(smoke_table):
    out, _, result = smoke_table
    markdown = (out / "results" / "table5.md").read_text()
    assert "| pda_fa |" in markdown and "| no_crop |" in markdown
    assert "paper AmAP (ScanNet v2)" in markdown and "46.08" in markdown
    document = json.loads((out / "results" / "table5.json").read_text())
    assert document == result
    assert set(document["methods"]) == {"pda_fa", "no_crop"}
    rows = document["meta"]["rows"]
    assert rows["pda_fa"]["paper"] == {"AmAP": 46.08, "source": "Table 1"}
    assert rows["no_crop"]["paper"] is None
    for name, row in rows.items():
        assert row["seed"] == 1 and row["train_s"] > 0 and row["eval_s"] > 0 and row["steps"] == 2
        assert row["AmAP"] == pytest.approx(document["methods"][name]["AmAP"])
        assert (out / "runs" / name / "model.safetensors").is_file()
    assert rows["no_crop"]["config"]["align"]["augment"]["crop"] is False
    chance = document["meta"]["chance"]  # random scores: AP = each class's share of the evaluated points
    shares = [v for v in chance["AP"].values() if v is not None]
    assert shares and all(0 < v < 100 for v in shares) and sum(shares) < 100
    assert chance["AmAP"] == pytest.approx(sum(shares) / len(shares))
    assert "| chance (random scores) |" in markdown
    assert rows["pda_fa"]["config"]["align"]["augment"]["crop"] is True


def test_a_finished_identical_row_is_reused_and_scores_the_same(smoke_table):
    out, registry, first = smoke_table
    again = run_experiment("pda_fa", data="demo", out_dir=out, smoke=True, progress=False, registry=registry,
                           overrides=["train.num_threads=1"], seed=1)
    row = again["meta"]["rows"]["pda_fa"]
    assert row["reused"] is True
    assert row["AmAP"] == pytest.approx(first["meta"]["rows"]["pda_fa"]["AmAP"], abs=1e-9)
    assert (out / "results" / "pda_fa.md").is_file()


@pytest.fixture(scope="module")
def smoke_table3(tmp_path_factory):
    """The whole ``table3`` on tiny demo data (--smoke): six fine-tuning rows and the pda_fa run they start from."""
    out = tmp_path_factory.mktemp("table3")
    assert main(["experiment", "table3", "--data", "demo", "--smoke", "--quiet", "--out", str(out),
                 "--set", "train.num_threads=1"]) == 0
    return out


def test_table3_smoke_reports_miou_for_every_fine_tuning_row(smoke_table3):
    out = smoke_table3
    markdown = (out / "results" / "table3.md").read_text()
    names = ["ft_scratch_5", "ft_rtl_5", "ft_scratch_10", "ft_rtl_10", "ft_scratch_100", "ft_rtl_100"]
    for name in names:
        assert f"| {name} |" in markdown
    assert "paper mIoU (ScanNet v2)" in markdown and "## Per-class IoU (%)" in markdown
    assert "| method | wall | floor | cabinet |" in markdown and "| otherfurniture | mIoU |" in markdown
    document = json.loads((out / "results" / "table3.json").read_text())
    assert list(document["methods"]) == names and document["meta"]["metric"] == "iou"
    rows = document["meta"]["rows"]
    for name in names:
        assert rows[name]["mIoU"] == pytest.approx(document["methods"][name]["mIoU"])
        assert rows[name]["config"]["data"]["categories"] == "scannet20"
        assert rows[name]["paper"] is None
    assert list(rows["ft_rtl_5"]["IoU"]) == load_category_set("scannet20").target_names
    pda_fa = out / "runs" / "pda_fa" / "model.safetensors"  # the dependency, trained first
    assert rows["ft_rtl_5"]["init_from"] == str(pda_fa) and rows["ft_scratch_5"]["init_from"] is None
    assert "initialised the backbone from" in (out / "runs" / "ft_rtl_100" / "train.log").read_text()
    assert (out / "runs" / "ft_rtl_5" / "labelled_scans.txt").read_text() == \
        (out / "runs" / "ft_scratch_5" / "labelled_scans.txt").read_text()  # same scans for both starts
    assert len((out / "runs" / "ft_scratch_100" / "labelled_scans.txt").read_text().split()) == 2


def test_a_fine_tuning_row_is_reused_only_while_its_initial_checkpoint_is_unchanged(smoke_table3):
    out = smoke_table3
    kwargs = dict(data="demo", out_dir=out, smoke=True, progress=False, overrides=["train.num_threads=1"])
    assert run_experiment("ft_rtl_5", **kwargs)["meta"]["rows"]["ft_rtl_5"]["reused"] is True
    pda_fa = out / "runs" / "pda_fa" / "model.safetensors"
    shutil.copyfile(out / "runs" / "ft_scratch_100" / "model.safetensors", pda_fa)  # "pda_fa was retrained"
    assert run_experiment("ft_rtl_5", **kwargs)["meta"]["rows"]["ft_rtl_5"]["reused"] is False


def test_supervised_rows_of_table1_run_on_labelled_scans(smoke_table3):
    out = smoke_table3
    table = dataclasses.replace(REGISTRY.tables["table1"], rows=(REGISTRY.rows["supervised"],
                                                                 REGISTRY.rows["supervised_ours"]))
    registry = Registry(REGISTRY.rows, {"table1": table}, REGISTRY.reference)
    result = run_experiment("table1", data="demo", out_dir=out, smoke=True, progress=False, registry=registry,
                            overrides=["train.num_threads=1"])
    rows = result["meta"]["rows"]
    assert set(result["methods"]) == {"supervised", "supervised_ours"}
    assert rows["supervised"]["config"]["train"]["objective"] == "supervised"
    assert rows["supervised_ours"]["config"]["train"]["objective"] == "rtl+supervised"
    assert all(rows[n]["steps"] == 2 and rows[n]["AmAP"] is not None for n in rows)
    assert "| supervised_ours |" in (out / "results" / "table1.md").read_text()


# Rows trained end to end by the other smoke tests here or in tests/test_cli.py (the demo runs
# baseline / pda / pda_fa); every other row of the registry is trained by the test below.
ROWS_RUN_ELSEWHERE = {"pda_fa", "no_crop", "supervised", "supervised_ours", "baseline", "pda", "fa_k128",
                      "fa_lambda0p5"} | {r.name for r in REGISTRY.tables["table3"].rows}


def test_every_other_row_trains_end_to_end_at_toy_scale_with_its_own_heads(smoke_table):
    """ADDA/PointDAN rows train their adaptation heads; every ablation / layout row runs its recipe."""
    out, _, _ = smoke_table
    names = tuple(sorted(set(REGISTRY.rows) - ROWS_RUN_ELSEWHERE))
    assert {"adda", "pointdan", "nega_scene", "nega_models", "layout", "layout_replace", "no_da"} <= set(names)
    table = dataclasses.replace(REGISTRY.tables["table5"], name="comparisons",
                                rows=tuple(REGISTRY.rows[n] for n in names))
    registry = Registry(REGISTRY.rows, {"comparisons": table}, REGISTRY.reference)
    result = run_experiment("comparisons", data="demo", out_dir=out, smoke=True, progress=False, registry=registry,
                            overrides=["train.num_threads=1"], seed=1)
    rows = result["meta"]["rows"]
    assert set(rows) == set(names)
    assert all(rows[n]["steps"] == 2 and rows[n]["AmAP"] is not None and rows[n]["final_loss"] is not None
               for n in names)
    from safetensors import safe_open

    for name, prefix in (("adda", "adaptation.discriminator"), ("pointdan", "adaptation.")):
        with safe_open(str(out / "runs" / name / "model.safetensors"), "pt") as weights:
            keys = list(weights.keys())
        assert any(k.startswith(prefix) for k in keys), (name, keys[:5])
    for name in set(names) - {"adda", "pointdan"}:
        with safe_open(str(out / "runs" / name / "model.safetensors"), "pt") as weights:
            assert not any(k.startswith("adaptation.") for k in weights.keys())
