"""Scan -> point probabilities: invariants, tiled == whole-scan inference, tile planning."""

import numpy as np
import pytest
import torch

from cad2scan.config import ModelConfig
from cad2scan.errors import ConfigError
from cad2scan.geometry.voxel import voxel_indices, voxelise
from cad2scan.model.backbone import MinkUNet14, make_sparse_input
from cad2scan.model.net import RTLNet
from cad2scan.predict import (
    DEFAULT_OVERLAP,
    MINKUNET14_REACH,
    choose_tile_size,
    iter_tiles,
    minkunet14_reach,
    predict_probabilities,
    predict_scan,
)

VOXEL = 0.0625  # a power of two: shifts by whole voxels are exact in float32
NUM_CLASSES = 4
TOL = 1e-5


def randomise_batch_norm(net: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics, so eval-mode BatchNorm is not the identity."""
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def net():
    """Tiny random MinkUNet14 + hull (K=8) + anchors, eval mode. At random init the hull
    maps every voxel to nearly the same mix of prototypes; sharper projections and anchors
    make the probabilities vary from voxel to voxel, so context changes show."""
    torch.manual_seed(0)
    cfg = ModelConfig()
    cfg.backbone.width_scale = 0.25
    cfg.hull.num_prototypes = 8
    model = RTLNet(cfg, NUM_CLASSES)
    with torch.no_grad():
        randomise_batch_norm(model, torch.Generator().manual_seed(1))
        model.hull.theta.weight.mul_(300.0)
        model.anchors.anchors.mul_(50.0)
    return model.eval()


def strip_scene(rng: np.random.Generator, length_voxels=320, width_voxels=32, num_boxes=12) -> np.ndarray:
    """(N, 3) float32 metres: a long floor strip with boxes on it, away from the origin."""
    length, width = length_voxels * VOXEL, width_voxels * VOXEL
    floor = np.column_stack([rng.uniform(0, length, 12000), rng.uniform(0, width, 12000), rng.uniform(0, VOXEL, 12000)])
    parts = [floor]
    for _ in range(num_boxes):
        size = rng.uniform(0.3, 1.2, 3)
        corner = np.array([rng.uniform(0, length - size[0]), rng.uniform(0, width - size[1]), 0.0])
        parts.append(corner + rng.random((800, 3)) * size)
    return (np.concatenate(parts) + np.array([-3.0, 5.0, 0.5])).astype(np.float32)


@pytest.fixture(scope="module")
def scene():
    return strip_scene(np.random.default_rng(7))


@pytest.fixture(scope="module")
def whole(net, scene):
    return predict_scan(net, scene, VOXEL)


def test_rows_sum_to_one_and_points_of_a_voxel_share_probabilities(whole, scene):
    probabilities, report = whole
    assert probabilities.shape == (len(scene), NUM_CLASSES) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert report["tiles"] == 1 and report["tile_size"] is None
    grid = voxelise(scene, VOXEL)
    assert report["voxels"] == grid.num_voxels
    first = np.zeros(grid.num_voxels, dtype=np.int64)
    first[grid.point_to_voxel[::-1]] = np.arange(len(scene))[::-1]  # first point of each voxel
    np.testing.assert_array_equal(probabilities, probabilities[first[grid.point_to_voxel]])
    assert np.unique(probabilities.argmax(axis=1)).size > 1  # the test net is not constant


def test_output_rows_follow_the_input_point_order(net, scene, whole):
    perm = np.random.default_rng(3).permutation(len(scene))
    np.testing.assert_array_equal(predict_probabilities(net, scene[perm], VOXEL), whole[0][perm])


def test_translation_by_whole_voxels_does_not_change_probabilities(net, scene, whole):
    """The voxel grid is anchored at the scan's smallest voxel (index 0, a multiple of 16),
    so shifting the scan by any whole number of voxels (13 is not a multiple of 16) gives
    the same down-sampling cells and the same probabilities, whole and tiled."""
    shift = np.array([13, -7, 5], dtype=np.float32) * VOXEL
    moved = scene + shift
    assert np.all(voxel_indices(moved, VOXEL) - voxel_indices(scene, VOXEL) == [13, -7, 5])
    np.testing.assert_allclose(predict_probabilities(net, moved, VOXEL), whole[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(predict_probabilities(net, moved, VOXEL, tile_size=128), whole[0], rtol=0, atol=TOL)


def test_tiled_inference_equals_whole_scan_with_the_default_overlap(net, scene, whole):
    probabilities, report = predict_scan(net, scene, VOXEL, tile_size=64)
    assert report["tiles"] == 5 and report["overlap"] == DEFAULT_OVERLAP >= MINKUNET14_REACH
    assert report["max_forward_voxels"] < report["voxels"]
    np.testing.assert_allclose(probabilities, whole[0], rtol=0, atol=TOL)


def test_max_voxels_tiles_the_scan_and_bounds_every_forward_pass(net, scene, whole):
    max_voxels = int(0.8 * whole[1]["voxels"])
    probabilities, report = predict_scan(net, scene, VOXEL, max_voxels=max_voxels)
    assert report["tiles"] > 1 and report["max_forward_voxels"] <= max_voxels
    np.testing.assert_allclose(probabilities, whole[0], rtol=0, atol=TOL)
    _, untiled = predict_scan(net, scene, VOXEL, max_voxels=whole[1]["voxels"])
    assert untiled["tiles"] == 1


def test_small_overlap_is_exact_only_beyond_reach_minus_overlap_from_tile_borders(net, scene, whole):
    """With overlap m < 107 a voxel whose distance to an inner core border is >= 107 - m
    still sees its whole receptive field; nearer voxels may differ (and here do)."""
    tile, overlap = 128, 48
    probabilities = predict_probabilities(net, scene, VOXEL, tile_size=tile, overlap=overlap)
    grid = voxelise(scene, VOXEL)
    x = (grid.voxel_coords[:, 0] - grid.voxel_coords[:, 0].min())[grid.point_to_voxel]
    x0 = x // tile * tile
    left = np.where(x0 > 0, x - x0, np.inf)
    right = np.where(x0 + tile <= x.max(), x0 + tile - 1 - x, np.inf)
    far = np.minimum(left, right) >= MINKUNET14_REACH - overlap
    assert 0 < far.sum() < len(x)
    diff = np.abs(probabilities - whole[0]).max(axis=1)
    assert diff[far].max() <= TOL
    assert diff[~far].max() > 1e-3


def test_minkunet14_reach_bounds_where_an_input_change_is_felt():
    """Perturb the input feature of one x-slab of a 1D bar of voxels: only outputs within
    MINKUNET14_REACH voxels change, and the bound is nearly attained."""
    assert minkunet14_reach() == MINKUNET14_REACH == 107
    torch.manual_seed(0)
    backbone = MinkUNet14(out_channels=8, width_scale=0.25)
    with torch.no_grad():
        randomise_batch_norm(backbone, torch.Generator().manual_seed(2))
    backbone.eval()
    xs, ys, zs = np.meshgrid(np.arange(320), np.arange(2), np.arange(2), indexing="ij")
    coords = np.stack([xs.ravel(), ys.ravel(), zs.ravel()], axis=1)
    felt = []
    with torch.no_grad():
        base = backbone(make_sparse_input([coords])).feats
        for source in (150, 155, 158, 163):
            feats = np.ones((len(coords), 1), np.float32)
            feats[coords[:, 0] == source] = 3.0
            changed = (backbone(make_sparse_input([coords], [feats])).feats - base).abs().amax(dim=1) > 0
            felt.append(np.abs(coords[changed.numpy(), 0] - source).max())
    assert max(felt) <= MINKUNET14_REACH
    assert max(felt) >= 96


def test_iter_tiles_cores_partition_the_voxels_and_contexts_hold_the_overlap(scene):
    grid = voxelise(scene, VOXEL)
    coords = grid.voxel_coords - grid.voxel_coords.min(axis=0)
    owners = np.zeros(len(coords), dtype=np.int64)
    for tile in iter_tiles(coords, 64, 32):
        x0, y0 = tile.origin
        assert x0 % 16 == 0 and y0 % 16 == 0
        assert np.all(np.diff(tile.rows) > 0)
        xy = coords[tile.rows, :2]
        assert np.all((xy >= [x0 - 32, y0 - 32]) & (xy < [x0 + 96, y0 + 96]))
        inside = np.all((coords[:, :2] >= [x0 - 32, y0 - 32]) & (coords[:, :2] < [x0 + 96, y0 + 96]), axis=1)
        assert inside.sum() == len(tile.rows)  # every voxel of the window is in the context
        owners[tile.rows[tile.core]] += 1
    np.testing.assert_array_equal(owners, 1)


def test_choose_tile_size_picks_the_largest_tile_that_fits(scene):
    grid = voxelise(scene, VOXEL)
    coords = grid.voxel_coords - grid.voxel_coords.min(axis=0)
    max_voxels = grid.num_voxels // 2
    size = choose_tile_size(coords, max_voxels, 32)
    assert size % 16 == 0
    largest = lambda s: max(len(t.rows) for t in iter_tiles(coords, s, 32))  # noqa: E731
    assert largest(size) <= max_voxels
    assert all(largest(s) > max_voxels for s in range(size + 16, coords[:, 0].max() + 17, 16))


def test_impossible_or_misaligned_tiling_settings_raise_config_error(net, scene):
    with pytest.raises(ConfigError, match="max_voxels"):
        predict_scan(net, scene, VOXEL, max_voxels=50)
    with pytest.raises(ConfigError, match="tile_size"):
        predict_scan(net, scene, VOXEL, tile_size=40)
    with pytest.raises(ConfigError, match="overlap"):
        predict_scan(net, scene, VOXEL, tile_size=64, overlap=100)


def test_report_and_training_mode_are_restored(net, scene):
    net.train()
    try:
        _, report = predict_scan(net, scene[:2000], VOXEL)
        assert net.training
    finally:
        net.eval()
    assert report["points"] == 2000 and report["peak_memory_bytes"] > 0 and report["seconds"] > 0
    assert report["peak_memory_kind"] == "process_max_rss"
