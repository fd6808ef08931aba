"""Voxelisation round trips, negative coordinates and per-voxel reductions."""

import numpy as np
import pytest
import torch

from cad2scan.geometry.voxel import devoxelise, voxel_majority_label, voxel_mean, voxelise


def test_every_point_maps_to_the_voxel_containing_it():
    rng = np.random.default_rng(0)
    points = rng.uniform(-3.0, 3.0, size=(5000, 3))
    grid = voxelise(points, 0.05)
    assert grid.voxel_coords.dtype == np.int32 and grid.point_to_voxel.dtype == np.int64
    lo = grid.voxel_coords[grid.point_to_voxel] * 0.05
    assert np.all(points >= lo - 1e-9) and np.all(points < lo + 0.05 + 1e-9)
    np.testing.assert_array_equal(devoxelise(grid.voxel_coords, grid), np.floor(points / 0.05).astype(np.int32))


def test_voxels_are_unique_sorted_and_all_used():
    rng = np.random.default_rng(1)
    grid = voxelise(rng.normal(size=(3000, 3)), 0.25)
    coords = grid.voxel_coords
    assert len(np.unique(coords, axis=0)) == len(coords)
    np.testing.assert_array_equal(np.lexsort(coords.T[::-1]), np.arange(len(coords)))  # sorted by (x, y, z)
    assert set(grid.point_to_voxel.tolist()) == set(range(len(coords)))


def test_negative_coordinates_use_floor_not_truncation():
    points = np.array([[-0.01, 0.01, -0.051], [0.0, -0.0, 0.049], [-0.05, -0.1, 0.1]])
    grid = voxelise(points, 0.05)
    np.testing.assert_array_equal(devoxelise(grid.voxel_coords, grid), [[-1, 0, -2], [0, 0, 0], [-1, -2, 2]])


def test_points_in_the_same_voxel_share_it():
    points = np.array([[0.01, 0.01, 0.01], [0.04, 0.02, 0.03], [0.06, 0.0, 0.0]])
    grid = voxelise(points, 0.05)
    assert grid.num_voxels == 2
    assert grid.point_to_voxel[0] == grid.point_to_voxel[1] != grid.point_to_voxel[2]


def test_empty_and_invalid_inputs():
    grid = voxelise(np.zeros((0, 3)), 0.05)
    assert grid.voxel_coords.shape == (0, 3) and grid.point_to_voxel.shape == (0,)
    with pytest.raises(ValueError):
        voxelise(np.zeros((4, 2)), 0.05)
    with pytest.raises(ValueError):
        voxelise(np.full((2, 3), np.nan), 0.05)
    with pytest.raises(ValueError):
        voxelise(np.zeros((2, 3)), 0.0)


def test_devoxelise_works_for_torch_and_numpy_maps():
    values = torch.arange(6.0).reshape(3, 2)
    p2v = np.array([2, 0, 0, 1])
    out = devoxelise(values, p2v)
    assert isinstance(out, torch.Tensor)
    assert out.tolist() == [[4.0, 5.0], [0.0, 1.0], [0.0, 1.0], [2.0, 3.0]]
    assert devoxelise(values.numpy(), torch.tensor(p2v)).tolist() == out.tolist()


@pytest.mark.parametrize("as_torch", [False, True])
def test_voxel_mean_averages_points_of_each_voxel(as_torch):
    values = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    p2v = np.array([1, 1, 0])
    if as_torch:
        out = voxel_mean(torch.tensor(values), torch.tensor(p2v), 3).numpy()
    else:
        out = voxel_mean(values, p2v, 3)
    np.testing.assert_allclose(out, [[10.0, 0.0], [2.0, 3.0], [0.0, 0.0]])


@pytest.mark.parametrize("as_torch", [False, True])
def test_majority_label_known_answers(as_torch):
    # voxel 0: 3,3,5 -> 3; voxel 1: tie 7 vs 2 -> 2 (smallest); voxel 2: only ignored -> -1;
    # voxel 3: ignored points do not vote: -1,-1,-1,4 -> 4; voxel 4: no points -> -1
    labels = np.array([3, 5, 3, 7, 2, -1, -1, -1, -1, 4, 7, 2])
    p2v = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 1, 1])
    if as_torch:
        out = voxel_majority_label(torch.tensor(labels), torch.tensor(p2v), 5).tolist()
    else:
        out = voxel_majority_label(labels, p2v, 5).tolist()
    assert out == [3, 2, -1, 4, -1]


def test_majority_label_with_custom_ignore_index():
    labels = np.array([255, 255, 1, 0, 0])
    p2v = np.array([0, 0, 0, 1, 1])
    assert voxel_majority_label(labels, p2v, 2, ignore_index=255).tolist() == [1, 0]


def test_majority_label_numpy_and_torch_agree_on_random_data():
    rng = np.random.default_rng(2)
    labels = rng.integers(-1, 6, size=4000)
    p2v = rng.integers(0, 300, size=4000)
    a = voxel_majority_label(labels, p2v, 310)
    b = voxel_majority_label(torch.tensor(labels), torch.tensor(p2v), 310).numpy()
    np.testing.assert_array_equal(a, b)
    for v in rng.choice(300, 20, replace=False):  # brute force check on a sample
        votes = labels[(p2v == v) & (labels >= 0)]
        if len(votes) == 0:
            assert a[v] == -1
        else:
            counts = np.bincount(votes)
            assert a[v] == int(np.argmax(counts))
