"""Dataset preparation: model and scene caches, manifests, resumability, bad files, CLI."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from cad2scan.cli import main
from cad2scan.errors import ConfigError, DataFormatError
from cad2scan.geometry.floor import detect_floor_height
from cad2scan.geometry.mesh import Mesh
from cad2scan.io.off import write_off
from cad2scan.prepare import (CACHE_VERSION, SceneSource, collect_reports, first_point_per_voxel, list_cad_models,
                              list_scene_sources, load_scene, prepare_models, prepare_scene_split, prepare_scenes)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
POINTS = 256  # small models keep the synthetic tests fast


def _shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"shared sample data not found at {path}")
    return path


# ----------------------------------------------------------------------------- fixtures
def _box(size: tuple[float, float, float], offset: float = 0.0) -> Mesh:
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
    vertices = corners * np.asarray(size) + offset
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return Mesh(vertices, faces)


def _cad_library(root: Path) -> Path:
    """chair (3 boxes) and table (2 boxes) in ModelNet layout."""
    for name, sizes in {"chair": [(1, 1, 2), (2, 1, 3), (1, 2, 1)], "table": [(3, 2, 1), (4, 2, 1)]}.items():
        for k, size in enumerate(sizes, start=1):
            write_off(root / name / "train" / f"{name}_{k:04d}.off", _box(size, offset=10.0 * k))
    return root


def _prepare(cad: Path, cache: Path, **kwargs):
    with collect_reports() as reports:
        bank = prepare_models(cad, cache, points_per_model=kwargs.pop("points_per_model", POINTS), progress=False,
                              **kwargs)
    return bank, reports[-1]


def _record(cache: Path, key: str) -> dict:
    return json.loads((cache / "models" / "train" / f"{key}.json").read_text())


# ----------------------------------------------------------------------------- CAD models
def test_modelnet_sample_folder_gives_8192_normalised_float_points_per_model(tmp_path):
    root = _shared("modelnet40/ModelNet40")
    bank, report = _prepare(root, tmp_path, points_per_model=8192)
    expected = {name: len(files) for name, files in list_cad_models(root, "train").items()}
    assert bank.count() == expected and report.failed == []
    for points in (p for items in bank.points.values() for p in items):
        assert points.shape == (8192, 3) and points.dtype == np.float32
        assert abs(points[:, 2].min()) < 1e-6  # bottom on the floor
        low, high = points.min(axis=0), points.max(axis=0)
        np.testing.assert_allclose((low[:2] + high[:2]) / 2, 0, atol=1e-6)
        assert np.linalg.norm(high - low) == pytest.approx(1.0, abs=1e-5)
    # the bathtubs keep ModelNet's merged "OFF3514 3546 0" header and are read all the same
    assert bank.count()["bathtub"] == 3


def test_record_and_manifest_name_source_size_checksum_and_version(tmp_path):
    cad = _cad_library(tmp_path / "cad")
    _prepare(cad, tmp_path / "cache")
    source = cad / "chair" / "train" / "chair_0002.off"
    record = _record(tmp_path / "cache", "chair/chair_0002")
    assert record["version"] == CACHE_VERSION and record["status"] == "done"
    assert record["source"]["path"] == str(source.resolve())
    assert record["source"]["size"] == source.stat().st_size
    assert record["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert record["settings"]["points_per_model"] == POINTS
    cached = tmp_path / "cache" / "models" / "train" / "chair" / "chair_0002.npy"
    assert record["arrays"]["points"]["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    manifest = json.loads((tmp_path / "cache" / "models" / "train" / "manifest.json").read_text())
    entry = {e["key"]: e for e in manifest["items"]}["chair/chair_0002"]
    assert manifest["version"] == CACHE_VERSION
    assert (entry["source"], entry["size"], entry["status"]) == (str(source.resolve()), source.stat().st_size, "done")
    assert len(manifest["items"]) == 5


def test_second_run_reuses_every_item_without_rewriting(tmp_path):
    cad = _cad_library(tmp_path / "cad")
    first, report = _prepare(cad, tmp_path / "cache")
    assert (report.built, report.reused) == (5, 0)
    cached = tmp_path / "cache" / "models" / "train" / "table" / "table_0001.npy"
    stamp = cached.stat().st_mtime_ns
    second, report = _prepare(cad, tmp_path / "cache")
    assert (report.built, report.reused, report.failed) == (0, 5, [])
    assert cached.stat().st_mtime_ns == stamp
    for name in first.points:
        for a, b in zip(first.points[name], second.points[name]):
            np.testing.assert_array_equal(a, b)


def test_deleted_truncated_and_half_written_items_are_redone(tmp_path):
    cad = _cad_library(tmp_path / "cad")
    cache = tmp_path / "cache"
    first, _ = _prepare(cad, cache)
    folder = cache / "models" / "train"
    (folder / "chair" / "chair_0001.npy").unlink()  # deleted
    data = (folder / "chair" / "chair_0002.npy").read_bytes()
    (folder / "chair" / "chair_0002.npy").write_bytes(data[: len(data) // 2])  # truncated
    (folder / "table" / "table_0001.json").unlink()  # crashed before its record was written
    leftover = folder / "table" / ".table_0001.npy.x1y2z3.tmp"  # an interrupted atomic write
    leftover.write_bytes(b"half")
    second, report = _prepare(cad, cache)
    assert (report.built, report.reused) == (3, 2)
    assert not leftover.exists()
    for name in first.points:  # per-item seeds: the redone items are identical
        for a, b in zip(first.points[name], second.points[name]):
            np.testing.assert_array_equal(a, b)


def test_changed_source_is_redone_but_a_touched_or_moved_one_is_kept(tmp_path):
    cad = _cad_library(tmp_path / "cad")
    cache = tmp_path / "cache"
    first, _ = _prepare(cad, cache)
    changed = cad / "table" / "train" / "table_0002.off"
    write_off(changed, _box((1, 5, 1)))
    touched = cad / "chair" / "train" / "chair_0003.off"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    second, report = _prepare(cad, cache)
    assert (report.built, report.reused) == (1, 4)
    assert not np.array_equal(first.points["table"][1], second.points["table"][1])
    assert _record(cache, "chair/chair_0003")["source"]["files"][0]["mtime_ns"] == touched.stat().st_mtime_ns
    moved = tmp_path / "moved"
    cad.rename(moved)  # same content elsewhere: confirmed by checksum, not redone
    _, report = _prepare(moved, cache)
    assert (report.built, report.reused) == (0, 5)
    assert _record(cache, "chair/chair_0001")["source"]["path"] == str((moved / "chair/train/chair_0001.off").resolve())


def test_changed_setting_redoes_every_item(tmp_path):
    cad = _cad_library(tmp_path / "cad")
    _prepare(cad, tmp_path / "cache")
    bank, report = _prepare(cad, tmp_path / "cache", points_per_model=128)
    assert (report.built, report.reused) == (5, 0)
    assert all(p.shape == (128, 3) for items in bank.points.values() for p in items)
    _, report = _prepare(cad, tmp_path / "cache", points_per_model=128, seed=1)
    assert report.built == 5


def test_verify_finds_a_cached_file_corrupted_in_place(tmp_path):
    cad = _cad_library(tmp_path / "cad")
    cache = tmp_path / "cache"
    first, _ = _prepare(cad, cache)
    cached = cache / "models" / "train" / "chair" / "chair_0001.npy"
    data = bytearray(cached.read_bytes())
    data[-4:] = b"\xff\xff\xff\x7f"  # same size, different content
    cached.write_bytes(bytes(data))
    _, report = _prepare(cad, cache)
    assert report.built == 0  # size and mtime checks cannot see it...
    second, report = _prepare(cad, cache, verify=True)
    assert (report.built, report.reused) == (1, 4)  # ...hashing does
    np.testing.assert_array_equal(first.points["chair"][0], second.points["chair"][0])


def test_bad_mesh_is_reported_and_skipped_while_the_rest_succeed(tmp_path):
    cad = _cad_library(tmp_path / "cad")
    bad = cad / "chair" / "train" / "chair_0009.off"
    bad.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")  # face index out of range
    bank, report = _prepare(cad, tmp_path / "cache")
    assert bank.count() == {"chair": 3, "table": 2}
    assert (report.built, len(report.failed)) == (5, 1)
    source, reason = report.failed[0]
    assert source == str(bad) and str(bad) in reason
    assert any("bad:" in line and "chair_0009.off" in line for line in report.summary_lines())
    manifest = json.loads((tmp_path / "cache" / "models" / "train" / "manifest.json").read_text())
    assert {e["key"]: e["status"] for e in manifest["items"]}["chair/chair_0009"] == "failed"
    _, report = _prepare(cad, tmp_path / "cache")  # remembered: reported again, not retried
    assert (report.built, report.reused, len(report.failed)) == (0, 5, 1)
    write_off(bad, _box((1, 1, 1)))  # fixed: prepared
    bank, report = _prepare(cad, tmp_path / "cache")
    assert (report.built, report.failed, bank.count()["chair"]) == (1, [], 4)


def test_unexpected_error_on_one_item_is_reported_and_retried_next_run(tmp_path, monkeypatch):
    import cad2scan.prepare as prepare

    cad = _cad_library(tmp_path / "cad")
    real_build = prepare._build_model

    def flaky(item):
        if item.key == "table/table_0002":
            raise IndexError("boom")
        return real_build(item)

    monkeypatch.setattr(prepare, "_build_model", flaky)
    bank, report = _prepare(cad, tmp_path / "cache")
    assert bank.count() == {"chair": 3, "table": 1}
    assert len(report.failed) == 1 and "internal error IndexError: boom" in report.failed[0][1]
    monkeypatch.setattr(prepare, "_build_model", real_build)
    bank, report = _prepare(cad, tmp_path / "cache")
    assert (report.built, report.reused, bank.count()["table"]) == (1, 4, 2)


def test_requested_class_with_no_usable_mesh_is_an_error(tmp_path):
    cad = _cad_library(tmp_path / "cad")
    (cad / "lamp" / "train").mkdir(parents=True)
    (cad / "lamp" / "train" / "lamp_0001.off").write_text("OFF\n0 0 0\n")
    with pytest.raises(DataFormatError, match="lamp"):
        _prepare(cad, tmp_path / "cache", classes=["chair", "lamp"])
    bank, report = _prepare(cad, tmp_path / "cache")  # all classes: the empty one is left out
    assert sorted(bank.points) == ["chair", "table"] and len(report.failed) == 1


def test_worker_processes_give_the_same_points_as_inline(tmp_path):
    cad = _cad_library(tmp_path / "cad")
    inline, _ = _prepare(cad, tmp_path / "one", workers=1)
    parallel, report = _prepare(cad, tmp_path / "two", workers=2)
    assert report.built == 5
    for name in inline.points:
        for a, b in zip(inline.points[name], parallel.points[name]):
            np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- scenes
def _export_folder(root: Path, rng: np.random.Generator) -> Path:
    """Three VoteNet-style exports: a floor + a box each; the third has a label count mismatch."""
    root.mkdir(parents=True)
    for k in range(3):
        floor = np.c_[rng.uniform(0, 4, (2000, 2)), np.full(2000, 0.3)]
        box = rng.uniform([1, 1, 0.3], [1.5, 1.5, 1.0], (500, 3))
        vert = np.c_[np.r_[floor, box], rng.integers(0, 255, (2500, 3))].astype(np.float32)
        label = np.r_[np.full(2000, 2), np.full(500, 5)].astype(np.uint32)
        np.save(root / f"scene{k:04d}_00_vert.npy", vert)
        np.save(root / f"scene{k:04d}_00_sem_label.npy", label if k < 2 else label[:-7])
    return root


def test_npy_exports_are_prepared_with_labels_and_a_bad_one_is_reported(tmp_path):
    folder = _export_folder(tmp_path / "exports", np.random.default_rng(0))
    sources = list_scene_sources("scannet_npy", folder, "all")
    assert [s.scene_id for s in sources] == ["scene0000_00", "scene0001_00", "scene0002_00"]
    with collect_reports() as reports:
        done = prepare_scenes(sources, tmp_path / "cache", labels=True, progress=False)
    assert [p.name for p in done] == ["scene0000_00", "scene0001_00"]
    assert len(reports[0].failed) == 1 and "scene0002_00_sem_label.npy" in reports[0].failed[0][1]
    scene = load_scene(done[0])
    vert = np.load(folder / "scene0000_00_vert.npy")
    np.testing.assert_array_equal(scene["coord"], vert[:, :3])
    assert scene["label"].dtype == np.int64 and np.bincount(scene["label"]).tolist()[2:6:3] == [2000, 500]
    assert scene["floor_z"] == pytest.approx(detect_floor_height(vert[:, :3])) and scene["scene_id"] == "scene0000_00"
    mapped = load_scene(done[0], mmap=True)
    assert isinstance(mapped["coord"], np.memmap) and not mapped["coord"].flags.writeable
    np.testing.assert_array_equal(mapped["label"], scene["label"])
    with pytest.raises(ConfigError, match="selection"):
        list_scene_sources("scannet_npy", folder, "train")  # no scannetv2_train.txt there


def test_training_scans_keep_the_first_point_of_each_voxel(tmp_path):
    folder = _export_folder(tmp_path / "exports", np.random.default_rng(1))
    sources = list_scene_sources("scannet_npy", folder, "scene0000_00,scene0001_00")
    done = prepare_scenes(sources, tmp_path / "cache", labels=False, voxel_size=0.05, progress=False)
    scene = load_scene(done[0])
    full = np.load(folder / "scene0000_00_vert.npy")[:, :3]
    keys = [tuple(k) for k in np.floor(full.astype(np.float64) / 0.05).astype(np.int64)]
    first = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    assert len(scene["coord"]) == len(first)
    np.testing.assert_array_equal(np.sort(first_point_per_voxel(full, 0.05)), sorted(first.values()))
    np.testing.assert_array_equal(scene["coord"], full[first_point_per_voxel(full, 0.05)])
    assert (scene["label"] == -1).all()
    assert "unlabelled-v0.05" in str(done[0])


def test_labelled_training_scans_keep_one_point_per_voxel_with_its_label_beside_the_unlabelled_cache(tmp_path):
    folder = _export_folder(tmp_path / "exports", np.random.default_rng(5))
    selection = "scene0000_00,scene0001_00"
    labelled = prepare_scene_split("train_labelled", "scannet_npy", folder, selection, tmp_path / "cache",
                                   voxel_size=0.05, progress=False)
    unlabelled = prepare_scene_split("train", "scannet_npy", folder, selection, tmp_path / "cache", voxel_size=0.05,
                                     progress=False)
    assert [p.parent.name for p in labelled] == ["labelled-v0.05"] * 2
    assert [p.parent.name for p in unlabelled] == ["unlabelled-v0.05"] * 2
    scene, plain = load_scene(labelled[0]), load_scene(unlabelled[0])
    full = np.load(folder / "scene0000_00_vert.npy")[:, :3]
    labels = np.load(folder / "scene0000_00_sem_label.npy").astype(np.int64)
    keep = first_point_per_voxel(full, 0.05)
    np.testing.assert_array_equal(scene["coord"], full[keep])
    np.testing.assert_array_equal(scene["coord"], plain["coord"])
    np.testing.assert_array_equal(scene["label"], labels[keep])
    assert set(np.unique(scene["label"]).tolist()) == {2, 5} and (plain["label"] == -1).all()
    with pytest.raises(ValueError, match="train_labelled"):
        prepare_scene_split("labelled", "scannet_npy", folder, selection, tmp_path / "cache", voxel_size=0.05)


def test_truncated_scene_array_is_redone_and_unfinished_scene_refuses_to_load(tmp_path):
    folder = _export_folder(tmp_path / "exports", np.random.default_rng(2))
    sources = list_scene_sources("scannet_npy", folder, "scene0000_00")
    done = prepare_scenes(sources, tmp_path / "cache", labels=False, progress=False)
    expected = load_scene(done[0])
    coord = done[0] / "coord.npy"
    coord.write_bytes(coord.read_bytes()[:100])
    (done[0] / "item.json").rename(done[0] / "item.json.bak")
    with pytest.raises(DataFormatError, match="not a prepared scene"):
        load_scene(done[0])
    (done[0] / "item.json.bak").rename(done[0] / "item.json")
    with collect_reports() as reports:
        prepare_scenes(sources, tmp_path / "cache", labels=False, progress=False)
    assert reports[0].built == 1
    np.testing.assert_array_equal(load_scene(done[0])["coord"], expected["coord"])


def test_labelled_scan_without_labels_is_reported_not_cached_as_unlabelled(tmp_path):
    folder = _export_folder(tmp_path / "exports", np.random.default_rng(3))
    (folder / "scene0001_00_sem_label.npy").unlink()
    with collect_reports() as reports:
        done = prepare_scenes(list_scene_sources("scannet_npy", folder, "all"), tmp_path / "cache", labels=True,
                              progress=False)
    assert [p.name for p in done] == ["scene0000_00"]
    assert sorted(Path(s).name for s, _ in reports[0].failed) == ["scene0001_00_vert.npy", "scene0002_00_vert.npy"]
    with pytest.raises(DataFormatError, match="no usable scan"):
        prepare_scenes([SceneSource("scene0001_00", folder / "scene0001_00_vert.npy", "scannet_npy")],
                       tmp_path / "cache", labels=True, progress=False)


def test_full_exports_are_preferred_over_subsampled_ones_of_the_same_scene(tmp_path):
    folder = _export_folder(tmp_path / "exports", np.random.default_rng(5))
    full = np.zeros((10, 6), dtype=np.float32)
    full[:, 2] = np.arange(10)
    np.save(folder / "scene0001_00_vert_all.npy", full)
    np.save(folder / "scene0001_00_sem_label_all.npy", np.arange(10, dtype=np.uint32))
    source = list_scene_sources("scannet_npy", folder, "scene0001_00")[0]
    assert (source.path.name, source.label_path.name) == ("scene0001_00_vert_all.npy", "scene0001_00_sem_label_all.npy")


def test_repaired_s3dis_file_is_prepared_and_its_warning_is_in_the_summary(tmp_path):
    room = tmp_path / "s3dis" / "Area_2" / "office_1" / "Annotations"
    room.mkdir(parents=True)
    floor = "\n".join(f"{x * 0.1:.2f} {y * 0.1:.2f} 0.00 10 10 10" for x in range(20) for y in range(20))
    (room / "floor_1.txt").write_text(floor + "\n")
    (room / "chair_1.txt").write_bytes(b"1.0 1.0 0.5 185\x00187 20\n1.1 1.0 0.6 1 2 3\n")
    with collect_reports() as reports:
        done = prepare_scenes(list_scene_sources("s3dis", tmp_path / "s3dis", "2"), tmp_path / "cache", labels=True,
                              progress=False)
    scene = load_scene(done[0])
    assert np.bincount(scene["label"], minlength=13)[[1, 8]].tolist() == [400, 2]
    assert scene["floor_z"] == pytest.approx(0.0, abs=0.02)
    assert reports[0].failed == [] and any("NUL" in note for _, note in reports[0].notes)
    assert any(line.startswith("  note:") and "chair_1.txt" in line for line in reports[0].summary_lines())


def test_s3dis_fixture_rooms_are_prepared_with_labels(tmp_path):
    root = _shared("s3dis")
    done = prepare_scenes(list_scene_sources("s3dis", root, "1,5"), tmp_path, labels=True, progress=False)
    assert [p.name for p in done] == ["Area_1_conferenceRoom_1", "Area_1_hallway_1", "Area_5_copyRoom_1"]
    hallway = load_scene(done[1])
    assert hallway["coord"].dtype == np.float32 and hallway["coord"].shape == (69370, 3)
    counts = np.bincount(hallway["label"], minlength=13)
    assert (counts[0], counts[8]) == (50000, 19370)  # ceiling, chair
    train = prepare_scenes(list_scene_sources("s3dis", root, "1"), tmp_path, labels=False, voxel_size=0.05,
                           progress=False)
    assert len(load_scene(train[1])["coord"]) < 69370


def test_scannet_scene0470_is_prepared_with_nyu40_labels(tmp_path):
    root = _shared("scannet")
    sources = list_scene_sources("scannet", root, "scene0470_00")
    done = prepare_scenes(sources, tmp_path, labels=True, progress=False)
    scene = load_scene(done[0])
    assert scene["coord"].shape == (67465, 3) and scene["scene_id"] == "scene0470_00"
    counts = np.bincount(scene["label"], minlength=41)
    assert (counts[0], counts[1], counts[2], counts[5], counts[7], counts[8]) == (767, 24353, 14939, 15712, 2572, 2777)
    assert abs(scene["floor_z"] - np.median(scene["coord"][scene["label"] == 2, 2])) < 0.05
    record = json.loads((done[0] / "item.json").read_text())
    assert {f["name"] for f in record["source"]["files"]} == {"scene0470_00_vh_clean_2.ply",
                                                               "scene0470_00_vh_clean_2.labels.ply"}


def test_real_npy_exports_are_prepared(tmp_path):
    folder = _shared("scannet/preprocessed/mmdetection3d_votenet_format")
    done = prepare_scenes(list_scene_sources("scannet_npy", folder, "scene0000_00"), tmp_path, labels=True,
                          progress=False)
    scene = load_scene(done[0])
    np.testing.assert_array_equal(scene["label"], np.load(folder / "scene0000_00_sem_label_all.npy").astype(np.int64))
    assert scene["coord"].shape == (81369, 3)
    votenet = _shared("scannet/preprocessed/votenet_scannet_train_detection_data")
    train = prepare_scenes(list_scene_sources("scannet_npy", votenet, "all"), tmp_path, labels=False,
                           voxel_size=0.05, progress=False)
    assert len(train) == 12 and all(len(load_scene(p)["coord"]) < 50000 for p in train[:2])


# ----------------------------------------------------------------------------- CLI
def test_cli_prepares_modelnet_and_prints_the_bad_files(tmp_path, capsys):
    cad = _cad_library(tmp_path / "cad")
    (cad / "chair" / "train" / "chair_0009.off").write_text("not a mesh\n")
    argv = ["prepare", "modelnet40", "--root", str(cad), "--out", str(tmp_path / "cache"), "--workers", "1",
            "--quiet", "--set", f"data.points_per_model={POINTS}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "5 prepared" in out and "bad:" in out and "chair_0009.off" in out and "5 of 6 item(s) ready" in out
    assert main(argv) == 0
    assert "0 prepared, 5 up to date" in capsys.readouterr().out


def test_cli_prepares_scannet_exports_for_training_and_evaluation(tmp_path, capsys):
    folder = _export_folder(tmp_path / "exports", np.random.default_rng(4))
    argv = ["prepare", "scannet", "--root", str(folder), "--out", str(tmp_path / "cache"), "--workers", "1",
            "--quiet", "--set", "data.train_scenes=all", "--set", "data.eval_scenes=scene0000_00"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "scenes/scannet_npy/unlabelled-v0.05: 3 item(s): 3 prepared" in out
    assert "scenes/scannet_npy/labelled-full: 1 item(s): 1 prepared" in out
    assert main(["prepare", "scannet", "--out", str(tmp_path / "cache")]) == 2  # no --root
