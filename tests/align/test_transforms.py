"""Model normalisation, size priors and the PDA augmentations."""

import numpy as np
import pytest

from cad2scan.align.transforms import (
    ModelAugmentConfig,
    augment_model,
    normalise_model,
    random_crop,
    random_rotate_z,
    random_scale,
    scale_to_size_prior,
)


def box_points(rng, size=(2.0, 1.0, 0.5), n=2000, offset=(10.0, -5.0, 3.0)):
    """Points filling an axis-aligned box of ``size`` whose low corner is ``offset``."""
    return rng.uniform(0, 1, (n, 3)) * np.asarray(size) + np.asarray(offset)


def extents(points):
    return np.ptp(points, axis=0)


def xy_centre(points):
    return (points[:, :2].min(axis=0) + points[:, :2].max(axis=0)) / 2


def test_normalise_centres_xy_puts_bottom_at_zero_and_unit_diagonal():
    rng = np.random.default_rng(0)
    points = box_points(rng) * 37.0  # arbitrary CAD units
    out = normalise_model(points)
    np.testing.assert_allclose(xy_centre(out), 0.0, atol=1e-12)
    assert out[:, 2].min() == pytest.approx(0.0, abs=1e-12)
    assert np.linalg.norm(extents(out)) == pytest.approx(1.0)
    # Shape is kept: extents keep their ratios.
    np.testing.assert_allclose(extents(out) / extents(out)[0], extents(points) / extents(points)[0])


def test_normalise_keeps_float32_and_does_not_modify_input():
    points = box_points(np.random.default_rng(1)).astype(np.float32)
    before = points.copy()
    out = normalise_model(points)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(points, before)


def test_normalise_a_single_point_only_translates():
    out = normalise_model(np.array([[3.0, 4.0, 5.0]]))
    np.testing.assert_array_equal(out, [[0.0, 0.0, 0.0]])


def test_scale_to_size_prior_height_mode_matches_prior_height():
    points = normalise_model(box_points(np.random.default_rng(2)))
    out = scale_to_size_prior(points, (0.59, 0.55, 0.83), mode="height")
    assert extents(out)[2] == pytest.approx(0.83)
    assert out[:, 2].min() == pytest.approx(0.0, abs=1e-12)
    # Uniform: all extents scaled by the same factor.
    np.testing.assert_allclose(extents(out) / extents(points), 0.83 / extents(points)[2])


def test_scale_to_size_prior_fit_mode_ignores_azimuth():
    rng = np.random.default_rng(3)
    along_x = normalise_model(box_points(rng, size=(2.0, 1.0, 1.0)))
    along_y = along_x[:, [1, 0, 2]]  # same model turned 90 degrees
    prior = (1.0, 2.0, 1.0)  # length/width given the other way round
    out_x = scale_to_size_prior(along_x, prior, mode="fit")
    out_y = scale_to_size_prior(along_y, prior, mode="fit")
    np.testing.assert_allclose(np.sort(extents(out_x)), np.sort(extents(out_y)))
    # The model has exactly the prior's proportions, so "fit" reproduces the prior.
    np.testing.assert_allclose(np.sort(extents(out_x)), [1.0, 1.0, 2.0], rtol=1e-2)


def test_scale_to_size_prior_fit_mode_is_geometric_mean_of_ratios():
    points = np.array([[0, 0, 0], [1.0, 2.0, 4.0]])
    out = scale_to_size_prior(points, (4.0, 2.0, 2.0), mode="fit")
    # Sorted horizontal: model (2, 1) vs prior (4, 2) -> ratios 2, 2; height 2/4 = 0.5.
    expected = (2.0 * 2.0 * 0.5) ** (1 / 3)
    np.testing.assert_allclose(extents(out), extents(points) * expected)


def test_scale_to_size_prior_flat_model_falls_back_to_fit():
    rng = np.random.default_rng(4)
    flat = np.column_stack([rng.uniform(0, 2, 500), rng.uniform(0, 1, 500), np.zeros(500)])
    out = scale_to_size_prior(flat, (1.0, 0.5, 0.7), mode="height")
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(extents(out)[:2], [1.0, 0.5], rtol=1e-2)


def test_scale_to_size_prior_rejects_unknown_mode():
    with pytest.raises(ValueError):
        scale_to_size_prior(np.ones((3, 3)), (1, 1, 1), mode="width")


def test_random_rotate_z_keeps_heights_and_distances_to_the_axis():
    rng = np.random.default_rng(5)
    points = normalise_model(box_points(rng))
    out = random_rotate_z(points, np.random.default_rng(6))
    np.testing.assert_allclose(out[:, 2], points[:, 2])
    np.testing.assert_allclose(np.linalg.norm(out[:, :2], axis=1), np.linalg.norm(points[:, :2], axis=1))
    assert not np.allclose(out, points)


def test_random_rotate_z_angles_are_uniform_over_the_circle():
    point = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])  # xy centre at the origin
    rng = np.random.default_rng(7)
    angles = np.array([np.arctan2(*random_rotate_z(point, rng)[0, [1, 0]]) for _ in range(4000)])
    counts = np.histogram(angles, bins=8, range=(-np.pi, np.pi))[0]
    assert counts.min() > 400 and counts.max() < 600


def test_random_scale_stays_in_range_and_keeps_the_bottom():
    points = box_points(np.random.default_rng(8))
    rng = np.random.default_rng(9)
    for _ in range(50):
        out = random_scale(points, rng, 0.9, 1.1)
        ratio = extents(out) / extents(points)
        np.testing.assert_allclose(ratio, ratio[0])
        assert 0.9 <= ratio[0] <= 1.1
        assert out[:, 2].min() == pytest.approx(points[:, 2].min())
        np.testing.assert_allclose(xy_centre(out), xy_centre(points))


def test_crop_drops_exactly_one_cluster():
    rng = np.random.default_rng(10)
    points = box_points(rng, n=3000)
    for seed in range(30):
        crop_rng = np.random.default_rng(seed)
        keep = random_crop(points, crop_rng, 2, 5)
        # Recompute the clustering with the same draws.
        replay = np.random.default_rng(seed)
        k = int(replay.integers(2, 6))
        anchors = points[replay.choice(len(points), size=k, replace=False)]
        cluster = np.argmin(((points[:, None] - anchors[None]) ** 2).sum(axis=2), axis=1)
        dropped = np.unique(cluster[~keep])
        assert len(dropped) == 1
        np.testing.assert_array_equal(~keep, cluster == dropped[0])
        assert keep.any()


def test_crop_anchor_count_covers_the_range():
    points = box_points(np.random.default_rng(11), n=500)
    rng = np.random.default_rng(12)
    removed = [np.mean(~random_crop(points, rng, 2, 5)) for _ in range(300)]
    # With k anchors about 1/k of the points go: from ~1/2 down to ~1/5.
    assert max(removed) > 0.4 and min(removed) < 0.15
    assert 0.2 < np.mean(removed) < 0.4


def test_crop_keeps_tiny_models_whole():
    rng = np.random.default_rng(13)
    assert random_crop(np.zeros((1, 3)), rng).tolist() == [True]
    assert random_crop(np.zeros((0, 3)), rng).shape == (0,)
    # Two points, k clipped to 2: one of them goes.
    assert random_crop(np.array([[0.0, 0, 0], [1, 0, 0]]), rng).sum() == 1


def test_augment_model_produces_a_real_size_model_standing_at_the_origin():
    rng = np.random.default_rng(14)
    raw = box_points(rng, size=(30.0, 20.0, 40.0), offset=(100, 100, 100))
    cfg = ModelAugmentConfig(crop=False)
    out = augment_model(raw, (0.59, 0.55, 0.83), cfg, np.random.default_rng(15))
    assert out.shape == raw.shape
    assert out[:, 2].min() == pytest.approx(0.0, abs=1e-9)
    assert 0.83 * 0.9 - 1e-9 <= extents(out)[2] <= 0.83 * 1.1 + 1e-9
    assert np.abs(out[:, :2]).max() < 0.83  # centred about the origin in xy


def test_augment_model_crop_removes_points_without_moving_the_rest():
    rng = np.random.default_rng(16)
    raw = box_points(rng, size=(1.0, 1.0, 1.0))
    full = augment_model(raw, (1, 1, 1), ModelAugmentConfig(crop=False), np.random.default_rng(17))
    cropped = augment_model(raw, (1, 1, 1), ModelAugmentConfig(crop=True), np.random.default_rng(17))
    assert 0 < len(cropped) < len(full)
    # Same rotation and scale draws come first, so kept points are a subset of the full model.
    full_rows = {tuple(row) for row in np.round(full, 9)}
    assert all(tuple(row) in full_rows for row in np.round(cropped, 9))


def test_augment_model_without_augmentation_is_normalise_plus_size_prior():
    raw = box_points(np.random.default_rng(18))
    cfg = ModelAugmentConfig(rotate=False, scale=False, crop=False)
    out = augment_model(raw, (1.0, 1.0, 0.72), cfg, np.random.default_rng(19))
    np.testing.assert_allclose(out, scale_to_size_prior(normalise_model(raw), (1.0, 1.0, 0.72)))
    assert extents(out)[2] == pytest.approx(0.72)


def test_augment_model_is_deterministic_for_a_fixed_seed():
    raw = box_points(np.random.default_rng(20))
    cfg = ModelAugmentConfig()
    first = augment_model(raw, (1, 1, 1), cfg, np.random.default_rng(21))
    second = augment_model(raw, (1, 1, 1), cfg, np.random.default_rng(21))
    np.testing.assert_array_equal(first, second)
