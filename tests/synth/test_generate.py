"""Tests for writing the demo dataset to disk."""

import json
from pathlib import Path

import numpy as np
import pytest

from cad2scan.io.off import read_off
from cad2scan.io.ply import read_ply
from cad2scan.synth import generate as gen
from cad2scan.synth.cad_shapes import ALL_CLASSES, NEGATIVE_CLASSES, TARGET_CLASSES
from cad2scan.synth.scanner import ScannerConfig

TINY = dict(
    models_per_class_train=1, models_per_class_test=1, train_rooms=1, eval_rooms=1,
    scanner=ScannerConfig(sample_spacing=0.06, num_viewpoints=2, max_points=4000), progress=False,
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    return out, gen.generate_demo_dataset(out, seed=3, **TINY)


def test_writes_the_modelnet_layout_with_numbering_across_splits(tiny):
    out, _ = tiny
    for name in ALL_CLASSES:
        train = sorted((out / "ModelNet" / name / "train").glob("*.off"))
        test = sorted((out / "ModelNet" / name / "test").glob("*.off"))
        assert [p.name for p in train] == [f"{name}_0001.off"]
        assert [p.name for p in test] == [f"{name}_0002.off"]
        mesh = read_off(train[0])
        assert len(mesh.faces) > 0 and mesh.bounds()[0][2] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("scene_id", ["scene0000_00", "scene0001_00"])  # a training room, an evaluation room
def test_writes_scannet_scenes_with_nyu40_labels_for_training_and_evaluation_rooms(tiny, scene_id):
    out, manifest = tiny
    scans = out / "ScanNet" / "scans"
    assert (out / "ScanNet" / "scannetv2_train.txt").read_text() == "scene0000_00\n"
    assert (out / "ScanNet" / "scannetv2_val.txt").read_text() == "scene0001_00\n"
    assert sorted(p.name for p in (scans / scene_id).iterdir()) == [
        f"{scene_id}_vh_clean_2.labels.ply", f"{scene_id}_vh_clean_2.ply",
    ]
    mesh = read_ply(scans / scene_id / f"{scene_id}_vh_clean_2.ply")["vertex"]
    labelled = read_ply(scans / scene_id / f"{scene_id}_vh_clean_2.labels.ply")["vertex"]
    assert list(mesh) == ["x", "y", "z", "red", "green", "blue", "alpha"]
    assert mesh["x"].dtype == np.float32 and mesh["red"].dtype == np.uint8
    assert labelled["label"].dtype == np.uint16
    np.testing.assert_array_equal(mesh["x"], labelled["x"])
    assert 100 < len(mesh["x"]) <= 4000
    assert {1, 2} <= set(np.unique(labelled["label"]).tolist())
    info = manifest["scenes"]["info"][scene_id]
    assert info["points"] == len(mesh["x"])
    labels, counts = np.unique(labelled["label"], return_counts=True)
    assert info["label_points"] == {str(int(k)): int(c) for k, c in zip(labels, counts)}


def test_training_rooms_are_read_unlabelled_unless_labels_are_asked_for(tiny):
    from cad2scan.io.scannet import read_scannet_scene, scannet_scene_files

    out, _ = tiny
    folder = out / "ScanNet" / "scans" / "scene0000_00"
    assert [p.name for p in scannet_scene_files(folder, labels=False)] == ["scene0000_00_vh_clean_2.ply"]
    label = np.asarray(read_scannet_scene(folder, labels=True)["label"])
    assert (label >= 0).all() and {1, 2} <= set(np.unique(label).tolist())


def test_manifest_is_written_last_and_describes_the_dataset(tiny):
    out, manifest = tiny
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["seed"] == 3
    assert manifest["classes"] == {"targets": list(TARGET_CLASSES), "negatives": list(NEGATIVE_CLASSES)}
    assert manifest["models"]["total"] == 2 * len(ALL_CLASSES)
    assert manifest["scenes"]["train"] == ["scene0000_00"] and manifest["scenes"]["val"] == ["scene0001_00"]
    newest = max(p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file())
    assert (out / "manifest.json").stat().st_mtime_ns == newest


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tiny, tmp_path):
    out, _ = tiny
    gen.generate_demo_dataset(tmp_path / "again", seed=3, **TINY)
    assert _files(out) == _files(tmp_path / "again")
    gen.generate_demo_dataset(tmp_path / "other", seed=4, **TINY)
    other = _files(tmp_path / "other")
    same = _files(out)
    assert other.keys() == same.keys()
    assert other["ModelNet/chair/train/chair_0001.off"] != same["ModelNet/chair/train/chair_0001.off"]


def test_training_and_evaluation_rooms_come_from_disjoint_streams():
    a = gen.room_rng(0, False, 0).random(4)
    b = gen.room_rng(0, True, 0).random(4)
    assert not np.allclose(a, b)


def test_an_interrupted_run_leaves_no_manifest(tmp_path, monkeypatch):
    (tmp_path / "manifest.json").write_text("{}")

    def broken_scan(*args, **kwargs):
        raise RuntimeError("scanner crashed")

    monkeypatch.setattr(gen, "scan_room", broken_scan)
    with pytest.raises(RuntimeError, match="scanner crashed"):
        gen.generate_demo_dataset(tmp_path, seed=0, **TINY)
    assert not (tmp_path / "manifest.json").exists()
