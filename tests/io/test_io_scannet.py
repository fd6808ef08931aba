"""ScanNet readers on the real sample scenes and on scene folders the tests build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cad2scan.errors import DataFormatError, EmptyScanError
from cad2scan.io.ply import read_ply_points, write_ply
from cad2scan.io.scannet import (
    list_scenes,
    read_axis_alignment,
    read_label_map,
    read_scannet_npy,
    read_scannet_scene,
    read_split,
)

SCANNET = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "scannet"
TSV = SCANNET / "scannetv2-labels.combined.tsv"
MMDET = SCANNET / "preprocessed" / "mmdetection3d_votenet_format"

# scene0000_00's official axisAlignment (recovered exactly by a least-squares fit between the raw
# mesh and the axis-aligned mmdetection3d export of the same vertices)
SCENE0000_ALIGNMENT = [0.945519, 0.325568, 0.0, -5.38439, -0.325568, 0.945519, 0.0, -2.87178,
                       0.0, 0.0, 1.0, -0.06435, 0.0, 0.0, 0.0, 1.0]


def _shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared ScanNet sample data not found at {path}")
    return path


# ---------------------------------------------------------------- label map, alignment, splits


def test_label_map_of_real_tsv_maps_raw_categories_to_nyu40():
    mapping = read_label_map(_shared(TSV))
    assert len(mapping) == 607  # 608 lines, CRLF, minus the header
    assert mapping["wall"] == 1 and mapping["chair"] == 5 and mapping["bookshelf"] == 10
    assert all(isinstance(v, int) and 0 <= v <= 40 for v in mapping.values())
    modelnet = read_label_map(TSV, to_column="ModelNet40")
    assert modelnet["doorframe"] == "door" and "wall" not in modelnet  # empty cells left out


def test_label_map_accepts_crlf_and_lf_and_rejects_unknown_column(tmp_path):
    for newline in ("\r\n", "\n"):
        path = tmp_path / "map.tsv"
        path.write_bytes(newline.join(["id\traw_category\tnyu40id", "1\tchair\t5", "2\tlamp\t", ""]).encode())
        assert read_label_map(path) == {"chair": 5}
    with pytest.raises(DataFormatError, match=r"map\.tsv: label map has no column 'nyu99'"):
        read_label_map(path, to_column="nyu99")


def test_axis_alignment_is_parsed_row_major_or_identity_when_absent(tmp_path):
    info = tmp_path / "scene.txt"
    info.write_text("colorHeight = 968\naxisAlignment = " + " ".join(map(str, range(16))) + "\nsceneType = x\n")
    np.testing.assert_array_equal(read_axis_alignment(info), np.arange(16.0).reshape(4, 4))
    info.write_text("colorHeight = 968\n")
    np.testing.assert_array_equal(read_axis_alignment(info), np.eye(4))
    info.write_text("axisAlignment = 1 2 3\n")
    with pytest.raises(DataFormatError, match=r"scene\.txt: line 1: axisAlignment needs 16"):
        read_axis_alignment(info)


def test_real_scene_txt_without_axis_alignment_gives_identity():
    np.testing.assert_array_equal(read_axis_alignment(_shared(SCANNET / "scans/scene0000_00/scene0000_00.txt")), np.eye(4))


def test_split_file_and_list_scenes(tmp_path):
    scans = tmp_path / "scans"
    for scene in ("scene0002_00", "scene0000_01", "scene0000_00"):
        (scans / scene).mkdir(parents=True)
    (scans / "notes").mkdir()
    split = tmp_path / "scannetv2_train.txt"
    split.write_text("scene0002_00\r\nscene0000_00\r\n\r\n")
    assert read_split(split) == ["scene0002_00", "scene0000_00"]
    assert [p.name for p in list_scenes(tmp_path)] == ["scene0000_00", "scene0000_01", "scene0002_00"]
    assert [p.name for p in list_scenes(scans, split)] == ["scene0002_00", "scene0000_00"]
    split.write_text("scene0002_00\nscene0009_00\n")
    with pytest.raises(DataFormatError, match=r"scannetv2_train\.txt: 1 scene\(s\) of the split .*scene0009_00"):
        list_scenes(tmp_path, split)
    split.write_text("scene0002_00\nnot a scene\n")
    with pytest.raises(DataFormatError, match=r"scannetv2_train\.txt: line 2"):
        read_split(split)


# ---------------------------------------------------------------- real scenes


def test_real_labelled_scene_has_documented_counts():
    scene = read_scannet_scene(_shared(SCANNET / "scans" / "scene0470_00"))
    assert scene["scene_id"] == "scene0470_00"
    assert scene["coord"].shape == (67465, 3) and scene["coord"].dtype == np.float32
    assert scene["color"].dtype == np.uint8 and scene["label"].dtype == np.int64
    counts = np.bincount(scene["label"], minlength=41)
    assert (counts[0], counts[1], counts[2], counts[5], counts[7], counts[8]) == (767, 24353, 14939, 15712, 2572, 2777)
    assert "label" not in read_scannet_scene(SCANNET / "scans" / "scene0470_00", labels=False)


def test_unlabelled_real_scene_matches_the_mmdetection3d_export_vertices():
    scene = read_scannet_scene(_shared(SCANNET / "scans" / "scene0000_00"))
    assert "label" not in scene  # no labels.ply and no segs.json in the sample
    export = read_scannet_npy(_shared(MMDET / "scene0000_00_vert_all.npy"), MMDET / "scene0000_00_sem_label_all.npy")
    np.testing.assert_array_equal(scene["color"], export["color"])
    assert export["label"].shape == (81369,) and export["label"].dtype == np.int64


def test_axis_alignment_reproduces_the_aligned_export(tmp_path):
    source = _shared(SCANNET / "scans" / "scene0000_00" / "scene0000_00_vh_clean_2.ply")
    scene_dir = tmp_path / "scene0000_00"
    scene_dir.mkdir()
    (scene_dir / source.name).symlink_to(source.resolve())
    (scene_dir / "scene0000_00.txt").write_text("axisAlignment = " + " ".join(map(str, SCENE0000_ALIGNMENT)) + "\n")
    aligned = read_scannet_scene(scene_dir)
    export = read_scannet_npy(_shared(MMDET / "scene0000_00_vert_all.npy"))
    np.testing.assert_allclose(aligned["coord"], export["coord"], atol=2e-5)
    raw = read_scannet_scene(scene_dir, align=False)
    assert np.abs(raw["coord"] - export["coord"]).max() > 1.0


def test_npy_export_reader_checks_lengths(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((5, 6), np.float32))
    np.save(tmp_path / "l.npy", np.zeros(4, np.uint32))
    with pytest.raises(DataFormatError, match=r"l\.npy: 4 labels but v\.npy has 5"):
        read_scannet_npy(tmp_path / "v.npy", tmp_path / "l.npy")
    np.save(tmp_path / "bad.npy", np.zeros((5, 2), np.float32))
    with pytest.raises(DataFormatError, match=r"bad\.npy: expected an \(N, >=3\)"):
        read_scannet_npy(tmp_path / "bad.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 6), np.float32))
    with pytest.raises(EmptyScanError, match=r"empty\.npy"):
        read_scannet_npy(tmp_path / "empty.npy")


# ---------------------------------------------------------------- scene folders built by the tests


def _toy_scene(tmp_path: Path, scene_id: str = "scene0217_00", n: int = 8) -> Path:
    scene_dir = tmp_path / "scans" / scene_id
    rng = np.random.default_rng(0)
    write_ply(scene_dir / f"{scene_id}_vh_clean_2.ply", rng.random((n, 3)), rng.integers(0, 256, (n, 3)).astype(np.uint8),
              np.array([[0, 1, 2]]), {"alpha": np.full(n, 255, np.uint8)})
    return scene_dir


def _aggregation(scene_dir: Path, groups: list[dict], seg_indices: list[int]) -> None:
    scene_id = scene_dir.name
    (scene_dir / f"{scene_id}.aggregation.json").write_text(json.dumps({"sceneId": scene_id, "segGroups": groups}))
    (scene_dir / f"{scene_id}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": seg_indices}))
    (scene_dir.parent.parent / "scannetv2-labels.combined.tsv").write_text(
        "id\traw_category\tnyu40id\r\n1\tchair\t5\r\n2\ttable\t7\r\n"
    )


def test_labels_are_derived_from_aggregation_and_duplicate_groups_count_once(tmp_path):
    scene_dir = _toy_scene(tmp_path)
    groups = [
        {"id": 0, "objectId": 0, "segments": [10, 11], "label": "chair"},
        {"id": 1, "objectId": 1, "segments": [12], "label": "table"},
        {"id": 2, "objectId": 2, "segments": [13], "label": "unmapped thing"},
    ]
    duplicated = groups + [dict(g, id=g["id"] + 3, objectId=g["objectId"] + 3) for g in groups]  # scene0217_00
    _aggregation(scene_dir, duplicated, [10, 10, 11, 12, 12, 13, 99, 99])
    scene = read_scannet_scene(scene_dir)
    np.testing.assert_array_equal(scene["label"], [5, 5, 5, 7, 7, 0, 0, 0])
    np.testing.assert_array_equal(scene["instance"], [0, 0, 0, 1, 1, 2, -1, -1])
    assert scene["instance"].max() + 1 == 3  # three objects, not six


def test_segment_count_mismatch_is_reported(tmp_path):
    scene_dir = _toy_scene(tmp_path)
    _aggregation(scene_dir, [], [0, 0, 0])
    with pytest.raises(DataFormatError, match=r"segs\.json: 3 segment indices but the mesh has 8 vertices"):
        read_scannet_scene(scene_dir)


def test_label_vertex_count_mismatch_is_reported(tmp_path):
    scene_dir = _toy_scene(tmp_path)
    write_ply(scene_dir / "scene0217_00_vh_clean_2.labels.ply", np.zeros((7, 3)), properties={"label": np.ones(7, np.uint16)})
    with pytest.raises(DataFormatError, match=r"labels\.ply: 7 labelled vertices but the mesh .* has 8"):
        read_scannet_scene(scene_dir)


def test_missing_scene_folder_or_mesh_is_reported(tmp_path):
    with pytest.raises(DataFormatError, match=r"scene0001_00: ScanNet scene folder not found"):
        read_scannet_scene(tmp_path / "scene0001_00")
    (tmp_path / "scene0001_00").mkdir()
    with pytest.raises(DataFormatError, match=r"scene0001_00_vh_clean_2\.ply: mesh file missing"):
        read_scannet_scene(tmp_path / "scene0001_00")


def test_labels_ply_written_by_write_ply_is_read_as_scene_labels(tmp_path):
    scene_dir = _toy_scene(tmp_path, "scene0100_00")
    mesh = read_ply_points(scene_dir / "scene0100_00_vh_clean_2.ply")
    labels = np.array([0, 1, 2, 5, 7, 8, 39, 40], np.uint16)
    write_ply(scene_dir / "scene0100_00_vh_clean_2.labels.ply", mesh["coord"], mesh["color"], mesh["faces"],
              {"label": labels})
    np.testing.assert_array_equal(read_scannet_scene(scene_dir)["label"], labels)
