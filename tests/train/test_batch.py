import numpy as np
import pytest
import torch

from cad2scan.model.backbone import make_sparse_input
from cad2scan.train.batch import Batch, collate_segments

VOXEL = 0.05


def _segment(rng, n_scene, n_synthetic, num_classes=4, offset=(0.0, 0.0, 0.0), ignored=0):
    """Scene points (label -1) then synthetic points, ``ignored`` of them labelled -1."""
    scene = rng.uniform(-1.0, 1.0, (n_scene, 3)) + offset
    synthetic = rng.uniform(-0.3, 0.3, (n_synthetic, 3)) + offset
    labels = rng.integers(0, num_classes, n_synthetic)
    labels[rng.permutation(n_synthetic)[:ignored]] = -1
    return {
        "coord": np.concatenate([scene, synthetic]).astype(np.float32),
        "label": np.concatenate([np.full(n_scene, -1), labels]).astype(np.int64),
        "is_synthetic": np.concatenate([np.zeros(n_scene, bool), np.ones(n_synthetic, bool)]),
        "model_id": np.concatenate([np.full(n_scene, -1), np.zeros(n_synthetic, np.int64)]),
    }


@pytest.fixture
def segments():
    rng = np.random.default_rng(7)
    return [
        _segment(rng, 400, 120, ignored=10),
        _segment(rng, 0, 50),  # a "single" segment: a CAD model alone
        _segment(rng, 300, 80, offset=(5.0, -3.0, 0.2), ignored=80),  # all synthetic points ignored
        _segment(rng, 250, 60, offset=(-0.02, 0.01, 0.0)),
    ]


def test_keeps_exactly_the_labelled_synthetic_points(segments):
    batch = collate_segments(segments, VOXEL)
    expected = np.concatenate([s["label"][s["is_synthetic"] & (s["label"] >= 0)] for s in segments])
    assert batch.loss_label.dtype == np.int64 and batch.loss_voxel.dtype == np.int64
    assert batch.loss_label.tolist() == expected.tolist()
    assert len(batch.loss_voxel) == len(batch.loss_label) == 110 + 50 + 0 + 60
    assert (batch.loss_label >= 0).all()


def test_scene_points_with_a_label_are_not_used():
    rng = np.random.default_rng(0)
    segment = _segment(rng, 100, 20)
    segment["label"][:100] = 2  # a labelled scan point must still not enter the loss
    batch = collate_segments([segment], VOXEL)
    assert len(batch.loss_label) == 20


def test_each_loss_voxel_contains_its_synthetic_point(segments):
    batch = collate_segments(segments, VOXEL)
    all_voxels = np.concatenate(batch.voxel_coords)
    owner = np.concatenate([np.full(len(c), i) for i, c in enumerate(batch.voxel_coords)])
    points = np.concatenate([s["coord"][s["is_synthetic"] & (s["label"] >= 0)] for s in segments])
    segment_of_point = np.concatenate([np.full(int((s["is_synthetic"] & (s["label"] >= 0)).sum()), i)
                                       for i, s in enumerate(segments)])
    voxels = all_voxels[batch.loss_voxel]
    lower = voxels * VOXEL
    assert (owner[batch.loss_voxel] == segment_of_point).all()
    assert (points >= lower - 1e-6).all() and (points < lower + VOXEL + 1e-6).all()
    np.testing.assert_array_equal(voxels, np.floor(points.astype(np.float64) / VOXEL).astype(np.int64))


def test_loss_voxel_indexes_the_rows_of_the_sparse_input(segments):
    batch = collate_segments(segments, VOXEL)
    sparse = make_sparse_input(batch.voxel_coords)
    assert len(sparse.coords) == batch.num_voxels
    voxel, label = batch.loss_tensors(torch.device("cpu"))
    assert voxel.dtype == torch.int64 and label.dtype == torch.int64
    rows = sparse.coords[voxel].numpy()
    points = np.concatenate([s["coord"][s["is_synthetic"] & (s["label"] >= 0)] for s in segments])
    batch_index = np.repeat([0, 1, 2, 3], [110, 50, 0, 60])
    np.testing.assert_array_equal(rows[:, 0], batch_index)
    np.testing.assert_array_equal(rows[:, 1:], np.floor(points.astype(np.float64) / VOXEL).astype(np.int64))


def test_voxels_are_unique_per_segment_and_cover_all_points(segments):
    batch = collate_segments(segments, VOXEL)
    assert len(batch.voxel_coords) == 4
    for coords, segment in zip(batch.voxel_coords, segments):
        assert coords.dtype == np.int32
        assert len(np.unique(coords, axis=0)) == len(coords)
        expected = np.unique(np.floor(segment["coord"].astype(np.float64) / VOXEL).astype(np.int64), axis=0)
        np.testing.assert_array_equal(np.unique(coords.astype(np.int64), axis=0), expected)
    assert batch.num_voxels == sum(len(c) for c in batch.voxel_coords)


def test_num_points_counts_scene_and_synthetic_points(segments):
    batch = collate_segments(segments, VOXEL)
    assert batch.num_points == 520 + 50 + 380 + 310


def test_known_answer_two_tiny_segments():
    a = {"coord": np.array([[0.01, 0.01, 0.01], [0.12, 0.0, 0.0], [0.02, 0.03, 0.04]], np.float32),
         "label": np.array([-1, 1, 2]), "is_synthetic": np.array([False, True, True])}
    b = {"coord": np.array([[-0.01, 0.0, 0.0], [0.35, 0.35, 0.35]], np.float32),
         "label": np.array([0, -1]), "is_synthetic": np.array([True, True])}
    batch = collate_segments([a, b], 0.1)
    # segment a: voxels (0,0,0) and (1,0,0); segment b: (-1,0,0) and (3,3,3)
    assert [c.tolist() for c in batch.voxel_coords] == [[[0, 0, 0], [1, 0, 0]], [[-1, 0, 0], [3, 3, 3]]]
    assert batch.loss_voxel.tolist() == [1, 0, 2]
    assert batch.loss_label.tolist() == [1, 2, 0]
    assert batch.num_points == 5


def test_non_bool_synthetic_mask_is_treated_as_a_mask():
    segment = {"coord": np.array([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]], np.float32),
               "label": np.array([0, 1, 2]), "is_synthetic": np.array([0, 1, 1], dtype=np.uint8)}
    batch = collate_segments([segment], 0.5)
    assert batch.loss_label.tolist() == [1, 2]
    assert batch.loss_voxel.tolist() == [1, 2]


def test_empty_and_inconsistent_input_raise():
    with pytest.raises(ValueError, match="at least one"):
        collate_segments([], VOXEL)
    bad = {"coord": np.zeros((3, 3), np.float32), "label": np.zeros(2, np.int64), "is_synthetic": np.ones(3, bool)}
    with pytest.raises(ValueError, match="segment 0"):
        collate_segments([bad], VOXEL)


def test_batch_is_a_plain_dataclass():
    batch = collate_segments([{"coord": np.zeros((1, 3), np.float32), "label": np.array([3]),
                               "is_synthetic": np.array([True])}], VOXEL)
    assert isinstance(batch, Batch)
    assert batch.num_voxels == 1 and batch.loss_voxel.tolist() == [0] and batch.loss_label.tolist() == [3]


def test_loss_mask_replaces_the_synthetic_rule_and_still_skips_unlabelled_points():
    rng = np.random.default_rng(3)
    scan = _segment(rng, 200, 0)  # a labelled scan: no synthetic point, every point in the loss
    scan["label"] = rng.integers(-1, 4, 200)
    scan["loss_mask"] = np.ones(200, bool)
    mixed = _segment(rng, 100, 40)  # scene points used as negatives: label 3, in the loss by mask
    mixed["label"][:100] = 3
    mixed["loss_mask"] = np.r_[np.ones(100, bool), np.zeros(40, bool)]  # ...and the synthetic points left out
    plain = _segment(rng, 50, 30)  # no mask: the synthetic rule
    batch = collate_segments([scan, mixed, plain], VOXEL)
    expected = np.concatenate([scan["label"][scan["label"] >= 0], np.full(100, 3),
                               plain["label"][plain["is_synthetic"] & (plain["label"] >= 0)]])
    assert batch.loss_label.tolist() == expected.tolist()
    voxels = np.concatenate(batch.voxel_coords)[batch.loss_voxel]
    points = np.concatenate([scan["coord"][scan["label"] >= 0], mixed["coord"][:100],
                             plain["coord"][plain["is_synthetic"] & (plain["label"] >= 0)]])
    np.testing.assert_array_equal(voxels, np.floor(points.astype(np.float64) / VOXEL).astype(np.int64))


def test_loss_mask_of_the_wrong_length_raises():
    segment = _segment(np.random.default_rng(0), 10, 5)
    segment["loss_mask"] = np.ones(14, bool)
    with pytest.raises(ValueError, match="loss_mask"):
        collate_segments([segment], VOXEL)
