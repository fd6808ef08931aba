"""Supervised objectives: labelled samples, the shared batch stream, label fractions, backbone init."""

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from cad2scan.align.labelled import LabelledSampleBuilder, augment_scan, crop_window_mask
from cad2scan.align.mixing import MixConfig
from cad2scan.align.samples import SampleBuilder
from cad2scan.align.transforms import ModelAugmentConfig
from cad2scan.classes import load_category_set, load_size_priors
from cad2scan.config import ModelConfig, RunConfig
from cad2scan.errors import CheckpointError, ConfigError
from cad2scan.model.backbone import BackboneConfig
from cad2scan.model.net import RTLNet
from cad2scan.train.checkpoint import save_checkpoint
from cad2scan.train.data import BatchStream, labelled_subset, sample_source, samples_per_epoch
from cad2scan.train.loop import init_backbone, train

VOXEL = 0.05
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- pure functions
def test_sample_source_gives_rtl_and_labelled_samples_by_stream_parity():
    assert [sample_source("rtl", 3, 2, s) for s in range(3)] == [("rtl", 6), ("rtl", 7), ("rtl", 8)]
    assert [sample_source("supervised", 3, 2, s) for s in range(3)] == [("labelled", 6), ("labelled", 7),
                                                                          ("labelled", 8)]
    both = [sample_source("rtl+supervised", 4, step, slot) for step in range(2) for slot in range(4)]
    assert both == [("rtl", 0), ("labelled", 0), ("rtl", 1), ("labelled", 1),
                    ("rtl", 2), ("labelled", 2), ("rtl", 3), ("labelled", 3)]
    assert [sample_source("rtl+supervised", 1, step, 0) for step in range(4)] == [
        ("rtl", 0), ("labelled", 0), ("rtl", 1), ("labelled", 1)]  # batch 1: the steps alternate
    with pytest.raises(ValueError, match="objective"):
        sample_source("both", 1, 0, 0)


def test_samples_per_epoch_is_one_pass_over_the_scans_the_objective_draws_from():
    assert samples_per_epoch("rtl", 12, 5) == 12
    assert samples_per_epoch("supervised", 12, 5) == 5
    assert samples_per_epoch("rtl+supervised", 12, 5) == 24
    assert samples_per_epoch("rtl+supervised", 3, 5) == 10


@pytest.mark.parametrize("fraction, size", [(0.05, 1), (0.1, 2), (0.25, 5), (0.5, 10), (1.0, 20), (0.001, 1)])
def test_label_fraction_picks_ceil_of_f_times_n_scans_at_least_one(fraction, size):
    files = [f"scene{i:04d}_00" for i in range(20)]
    chosen = labelled_subset(files, fraction, seed=4)
    assert len(chosen) == size == max(1, math.ceil(fraction * 20))
    assert chosen == [f for f in files if f in chosen]  # in the given order, no repeats
    assert labelled_subset(files, fraction, seed=4) == chosen  # deterministic


def test_label_fraction_subsets_are_nested_and_depend_on_the_seed():
    files = [f"room{i}" for i in range(40)]
    small, medium = set(labelled_subset(files, 0.05, 7)), set(labelled_subset(files, 0.1, 7))
    assert small < medium < set(files)
    others = {tuple(labelled_subset(files, 0.1, seed)) for seed in range(6)}
    assert len(others) > 1
    with pytest.raises(ValueError, match="fraction"):
        labelled_subset(files, 0.0, 0)


# ----------------------------------------------------------------------------- labelled samples
def test_augment_scan_is_a_similarity_centred_in_xy_with_the_floor_kept():
    rng = np.random.default_rng(0)
    coord = rng.uniform([2, 3, 0], [6, 5, 2.5], (500, 3))
    out = augment_scan(coord, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.shape == coord.shape
    distances = np.linalg.norm(coord[:50, None] - coord[None, :50], axis=2)
    moved = np.linalg.norm(out[:50, None].astype(np.float64) - out[None, :50], axis=2)
    mask = distances > 0
    scale = moved[mask] / distances[mask]
    assert np.ptp(scale) < 1e-5 and 0.9 <= scale.mean() <= 1.1  # one uniform scale (rotation/flip keep lengths)
    np.testing.assert_allclose(out[:, 2], coord[:, 2] * scale.mean(), atol=1e-5)  # z only scaled: floor at 0 stays
    box_centre = (out[:, :2].min(axis=0) + out[:, :2].max(axis=0)) / 2
    assert np.abs(box_centre).max() < 0.5  # the scan's centre is (near) the origin after rotation


def test_augment_scan_flips_handedness_in_some_draws_and_not_in_others():
    coord = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    signs = set()
    for seed in range(16):
        out = augment_scan(coord, np.random.default_rng(seed)).astype(np.float64)
        frame = out[1:] - out[0]
        signs.add(int(np.sign(np.linalg.det(frame))))
    assert signs == {-1, 1}  # one flip mirrors the scan, none or both (a rotation by pi) do not


def test_labelled_sample_maps_scene_labels_and_puts_every_annotated_point_in_the_loss():
    categories = load_category_set("scannet11")
    scene = {"coord": np.random.default_rng(0).uniform(0, 3, (6, 3)).astype(np.float32),
             "label": np.array([5, 1, 0, 36, -1, 40]), "floor_z": 0.0}
    (segment,) = LabelledSampleBuilder(categories).build(scene, np.random.default_rng(2))
    chair, bathtub, background = categories.index_of("chair"), categories.index_of("bathtub"), 11
    assert segment["label"].tolist() == [chair, background, -1, bathtub, -1, background]
    assert segment["loss_mask"].tolist() == [True, True, False, True, False, True]
    assert not segment["is_synthetic"].any() and (segment["model_id"] == -1).all()
    assert segment["coord"].dtype == np.float32 and segment["label"].dtype == np.int64


def test_labelled_crop_keeps_each_label_with_its_point():
    rng = np.random.default_rng(5)
    coord = np.c_[rng.uniform(0, 10, (4000, 2)), rng.uniform(0, 2, 4000)].astype(np.float32)
    label = np.where(coord[:, 0] < 5, 5, 7)  # chair on the left half, table on the right
    builder = LabelledSampleBuilder(load_category_set("scannet11"), scene_crop=3.0)
    (segment,) = builder.build({"coord": coord, "label": label, "floor_z": 0.0}, np.random.default_rng(9))
    inside = crop_window_mask(coord, 3.0, np.random.default_rng(9))
    assert len(segment["coord"]) == int(inside.sum()) < len(coord)
    categories = load_category_set("scannet11")
    expected = np.where(coord[inside, 0] < 5, categories.index_of("chair"), categories.index_of("table"))
    assert segment["label"].tolist() == expected.tolist()
    assert np.ptp(segment["coord"][:, :2], axis=0).max() <= 3.0 * 1.1 * math.sqrt(2) + 1e-4


def test_segmentation_category_sets_leave_unlisted_labels_out_of_the_loss():
    builder = LabelledSampleBuilder(load_category_set("scannet20"))
    scene = {"coord": np.zeros((4, 3), np.float32), "label": np.array([1, 13, 40, 39]), "floor_z": 0.0}
    (segment,) = builder.build(scene, np.random.default_rng(0))
    assert segment["label"].tolist() == [0, -1, -1, 19] and segment["loss_mask"].tolist() == [True, False, False, True]


# ----------------------------------------------------------------------------- the batch stream
def _model(rng, points=128):
    p = rng.uniform(0, 1, (points, 3)) * rng.uniform(0.3, 1.0, 3)
    p[:, :2] -= p[:, :2].mean(axis=0)
    p[:, 2] -= p[:, 2].min()
    return (p / np.linalg.norm(p.max(axis=0) - p.min(axis=0))).astype(np.float32)


def _room(rng, path, labelled, points=1500):
    floor = np.c_[rng.uniform(0, 4, (points, 2)), rng.normal(0, 0.005, points)]
    coord = floor.astype(np.float32)
    label = rng.choice([2, 5, 7], points) if labelled else np.full(points, -1)
    np.savez(path, coord=coord, label=label.astype(np.int64), floor_z=np.float64(0.0))
    return path


@pytest.fixture(scope="module")
def stream_parts(tmp_path_factory):
    rng = np.random.default_rng(0)
    categories = load_category_set("scannet11")
    bank = {name: [_model(rng)] for name in [c.cad[0] for c in categories.classes] + ["lamp"]}
    builder = SampleBuilder(bank, categories, load_size_priors("size_priors"), "pda", ModelAugmentConfig(),
                            MixConfig(), 1)
    root = tmp_path_factory.mktemp("rooms")
    unlabelled = [_room(rng, root / f"u{i}.npz", False) for i in range(3)]
    labelled = [_room(rng, root / f"l{i}.npz", True) for i in range(2)]
    return builder, LabelledSampleBuilder(categories), unlabelled, labelled


def _mixed_stream(parts, objective="rtl+supervised", batch_size=4, rank=0, world_size=1):
    builder, labelled_builder, unlabelled, labelled = parts
    return BatchStream(builder, unlabelled, batch_size, VOXEL, seed=3, total_steps=4, rank=rank,
                       world_size=world_size, labelled_builder=labelled_builder, labelled_files=labelled,
                       objective=objective)


def test_rtl_plus_supervised_batches_alternate_pda_samples_and_labelled_scans(stream_parts):
    stream = _mixed_stream(stream_parts)
    for slot in range(4):
        (segment,) = stream.build_sample(1, slot)
        if slot % 2 == 0:  # a PDA sample: models mixed into an unlabelled scan, loss on the models
            assert segment["is_synthetic"].any() and "loss_mask" not in segment
        else:  # a labelled scan: no model, loss on its annotated points
            assert not segment["is_synthetic"].any() and segment["loss_mask"].all()
    batch = stream.build_batch(1)
    assert batch.loss_label.min() >= 0 and len(batch.voxel_coords) == 4


def test_the_shared_stream_is_a_pure_function_of_step_and_slot_and_splits_over_ranks(stream_parts):
    single = _mixed_stream(stream_parts)
    again = _mixed_stream(stream_parts)
    for step, slot in [(2, 3), (0, 0), (2, 3)]:  # any order, any repetition
        a, b = single.build_sample(step, slot)[0], again.build_sample(step, slot)[0]
        np.testing.assert_array_equal(a["coord"], b["coord"])
        np.testing.assert_array_equal(a["label"], b["label"])
    full = single.build_tensor_batch(3)
    parts = [_mixed_stream(stream_parts, rank=r, world_size=2).build_tensor_batch(3) for r in range(2)]
    assert torch.equal(torch.cat([p.voxel_coords for p in parts]), full.voxel_coords)
    assert torch.equal(torch.cat([p.loss_label for p in parts]), full.loss_label)


def test_supervised_stream_visits_every_labelled_scan_once_per_epoch_and_needs_no_cad_builder(stream_parts):
    _, labelled_builder, _, labelled = stream_parts
    stream = BatchStream(None, [], 1, VOXEL, seed=0, total_steps=4, labelled_builder=labelled_builder,
                         labelled_files=labelled, objective="supervised")
    rooms = [np.bincount(stream.build_sample(step, 0)[0]["label"] + 1).tobytes() for step in range(4)]
    assert len(set(rooms[:2])) == 2 and set(rooms[2:]) == set(rooms[:2])  # label counts identify the room
    with pytest.raises(ValueError, match="labelled training scans"):
        BatchStream(None, [], 1, VOXEL, seed=0, total_steps=1, objective="supervised")
    with pytest.raises(ValueError, match="sample builder"):
        BatchStream(None, [], 1, VOXEL, seed=0, total_steps=1, labelled_builder=labelled_builder,
                    labelled_files=labelled, objective="rtl+supervised")


@dataclass
class _ModelsOnlyBuilder:
    """Stands in for SampleBuilder in the models_only recipe: models without a scan."""

    mode: str = "models_only"

    def build(self, scene, rng):
        assert scene is None
        coord = rng.uniform(0, 1, (50, 3)).astype(np.float32)
        return [{"coord": coord, "label": np.zeros(50, np.int64), "is_synthetic": np.ones(50, bool),
                 "model_id": np.zeros(50, np.int64)}]


def test_models_only_recipe_needs_no_unlabelled_scans():
    stream = BatchStream(_ModelsOnlyBuilder(), [], 2, VOXEL, seed=0, total_steps=1)
    batch = stream.build_batch(0)
    assert len(batch.voxel_coords) == 2 and len(batch.loss_label) == 100


# ----------------------------------------------------------------------------- init_from
def _net(width_scale=0.25, seed=0, use_hull=True):
    torch.manual_seed(seed)
    cfg = ModelConfig(backbone=BackboneConfig(width_scale=width_scale), use_hull=use_hull)
    return RTLNet(cfg, 4, ["a", "b", "c", "background"]), cfg


def test_init_from_copies_exactly_the_backbone_tensors(tmp_path):
    source, source_cfg = _net(seed=1)
    for buffer in source.backbone.buffers():  # BatchNorm statistics travel too
        if buffer.is_floating_point():
            buffer.add_(0.5)
    path = tmp_path / "pretrained.safetensors"
    save_checkpoint(path, source, RunConfig(model=source_cfg), ["a", "b", "c", "background"])
    target, _ = _net(seed=2, use_hull=False)  # another head: only the backbone must fit
    before = {k: v.clone() for k, v in target.state_dict().items()}
    assert init_backbone(target, path) == len(source.backbone.state_dict())
    for name, value in target.state_dict().items():
        if name.startswith("backbone."):
            assert torch.equal(value, source.state_dict()[name]), name
        else:
            assert torch.equal(value, before[name]), name  # anchors keep their fresh values


def test_init_from_a_checkpoint_with_another_backbone_names_the_file(tmp_path):
    wide, wide_cfg = _net(width_scale=0.5)
    path = tmp_path / "wide.safetensors"
    save_checkpoint(path, wide, RunConfig(model=wide_cfg), ["a", "b", "c", "background"])
    narrow, _ = _net(width_scale=0.25)
    with pytest.raises(CheckpointError, match="wide.safetensors"):
        init_backbone(narrow, path)
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        init_backbone(narrow, tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match="@pda_fa"):
        init_backbone(narrow, "@pda_fa")


# ----------------------------------------------------------------------------- training runs
@pytest.fixture(scope="module")
def supervised_run(tiny_demo_run):
    root, cfg = tiny_demo_run("supervised", 8, [
        "train.objective=supervised", "train.label_fraction=0.5", "train.lr=0.01", "train.log_every=1",
        "align.scene_crop=0", "model.use_hull=false", "train.seed=5"])
    result = train(cfg, root / "run", progress=False)
    return root, cfg, result


def test_supervised_training_on_one_labelled_scan_lowers_the_loss(supervised_run):
    root, _, result = supervised_run
    losses = [json.loads(line)["loss"] for line in (root / "run" / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert len(losses) == 8 == result.steps
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_the_labelled_scans_used_are_the_seeded_subset_and_are_written_to_the_run(supervised_run):
    root, cfg, _ = supervised_run
    written = (root / "run" / "labelled_scans.txt").read_text().split()
    train_ids = (root / "data" / "ScanNet" / "scannetv2_train.txt").read_text().split()
    assert written == labelled_subset(train_ids, 0.5, cfg.train.seed) and len(written) == 1
    assert "labelled training scans: 1 of 2" in (root / "run" / "train.log").read_text()
    assert (root / "cache" / "scenes" / "scannet" / "labelled-v0.05" / written[0] / "item.json").is_file()
    assert not (root / "cache" / "models").exists()  # the supervised objective prepares no CAD model


def test_rtl_plus_supervised_run_starts_from_the_backbone_of_another_run(supervised_run, tiny_demo_run):
    source_root, _, source = supervised_run
    root, cfg = tiny_demo_run("both", 1, ["train.objective=rtl+supervised", "train.batch_size=2",
                                           f"train.init_from={source.checkpoint}"])
    result = train(cfg, root / "run", progress=False)
    log = (root / "run" / "train.log").read_text()
    assert f"initialised the backbone from {source.checkpoint}" in log and "objective rtl+supervised" in log
    assert result.steps == 1 and math.isfinite(result.final_loss)
