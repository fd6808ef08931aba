"""The paper's tables as commands: registry, row configs, and a smoke run on tiny demo data."""

import dataclasses
import json

import pytest

from cad2scan.cli import main
from cad2scan.config import load_config
from cad2scan.errors import ConfigError
from cad2scan.experiments import Registry, load_registry, row_config, row_switches, run_experiment

REGISTRY = load_registry()


def test_registry_lists_the_known_rows_and_tables():
    assert {"baseline", "pda", "pda_fa", "no_da", "no_crop", "hull_cos", "fa_k64", "fa_k128", "fa_k256",
            "fa_lambda0p1", "fa_lambda0p5", "fa_lambda4"} <= set(REGISTRY.rows)
    assert [r.name for r in REGISTRY.tables["table1"].rows] == ["baseline", "pda", "pda_fa"]
    assert {"pda_fa", "no_da", "no_crop", "hull_cos", "fa_k64", "fa_k256", "fa_lambda0p1",
            "fa_lambda4"} == {r.name for r in REGISTRY.tables["table5"].rows}


@pytest.mark.parametrize("row", sorted(REGISTRY.rows))
def test_every_row_preset_loads_and_inherits_the_scannet_setting(row):
    cfg = load_config(REGISTRY.rows[row].preset)
    assert cfg.data.scene_format == "scannet" and cfg.data.categories == "scannet11"


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
    assert rows["pda_fa"]["config"]["align"]["augment"]["crop"] is True


def test_a_finished_identical_row_is_reused_and_scores_the_same(smoke_table):
    out, registry, first = smoke_table
    again = run_experiment("pda_fa", data="demo", out_dir=out, smoke=True, progress=False, registry=registry,
                           overrides=["train.num_threads=1"], seed=1)
    row = again["meta"]["rows"]["pda_fa"]
    assert row["reused"] is True
    assert row["AmAP"] == pytest.approx(first["meta"]["rows"]["pda_fa"]["AmAP"], abs=1e-9)
    assert (out / "results" / "pda_fa.md").is_file()
