"""Floor height detection and floor placement positions."""

from pathlib import Path

import numpy as np
import pytest

from cad2scan.errors import EmptyScanError
from cad2scan.geometry.floor import detect_floor_height, floor_mask, sample_floor_positions


def room(rng, floor_z=0.3, floor_points=20000, size=(5.0, 4.0), height=2.6, noise=0.005):
    """A box room scan: floor, four walls, ceiling, with some sensor noise (metres, z up)."""
    w, d = size
    parts = [np.column_stack([rng.uniform(0, w, floor_points), rng.uniform(0, d, floor_points),
                              np.full(floor_points, floor_z)])]
    for axis, value in ((0, 0.0), (0, w), (1, 0.0), (1, d)):
        wall = np.column_stack([rng.uniform(0, w, 8000), rng.uniform(0, d, 8000),
                                rng.uniform(floor_z, floor_z + height, 8000)])
        wall[:, axis] = value
        parts.append(wall)
    parts.append(np.column_stack([rng.uniform(0, w, 15000), rng.uniform(0, d, 15000),
                                  np.full(15000, floor_z + height)]))
    points = np.concatenate(parts)
    return points + rng.normal(0, noise, points.shape)


def slab(rng, n, x, y, z):
    return np.column_stack([rng.uniform(*x, n), rng.uniform(*y, n), np.full(n, z)])


def test_floor_height_of_a_plain_room():
    rng = np.random.default_rng(0)
    assert detect_floor_height(room(rng, floor_z=0.3)) == pytest.approx(0.3, abs=0.01)
    assert detect_floor_height(room(rng, floor_z=-1.7)) == pytest.approx(-1.7, abs=0.01)


def test_floor_height_ignores_a_few_outliers_below_the_floor():
    rng = np.random.default_rng(1)
    points = room(rng, floor_z=0.0)
    outliers = np.column_stack([rng.uniform(0, 5, 30), rng.uniform(0, 4, 30), rng.uniform(-3, -0.2, 30)])
    # Also a little clump of stray points in one bin.
    clump = np.column_stack([rng.uniform(0, 1, 8), rng.uniform(0, 1, 8), np.full(8, -0.5)])
    assert detect_floor_height(np.concatenate([points, outliers, clump])) == pytest.approx(0.0, abs=0.01)


def test_floor_height_ignores_far_outliers_that_would_blow_up_the_histogram():
    rng = np.random.default_rng(2)
    points = np.concatenate([room(rng, floor_z=1.0), [[0, 0, -1e6], [1, 1, 1e6]]])
    assert detect_floor_height(points) == pytest.approx(1.0, abs=0.01)


def test_floor_height_is_not_fooled_by_denser_tables_above_it():
    rng = np.random.default_rng(3)
    points = room(rng, floor_z=0.0, floor_points=3000)  # little floor visible
    tables = [slab(rng, 20000, (0.5, 2.5), (0.5, 1.5), 0.72), slab(rng, 12000, (3, 4), (2, 3), 0.45)]
    points = np.concatenate([points, *tables])
    assert detect_floor_height(points) == pytest.approx(0.0, abs=0.01)


def test_floor_height_of_a_slightly_tilted_noisy_floor():
    rng = np.random.default_rng(4)
    points = room(rng, floor_z=0.5, noise=0.01)
    points[:, 2] += 0.004 * points[:, 0]  # 2 cm rise over 5 m
    assert detect_floor_height(points) == pytest.approx(0.51, abs=0.02)


def test_floor_height_without_any_horizontal_layer_is_the_low_end():
    rng = np.random.default_rng(5)
    column = np.column_stack([rng.normal(0, 0.1, 5000), rng.normal(0, 0.1, 5000), rng.uniform(2, 4, 5000)])
    assert detect_floor_height(column) == pytest.approx(2.02, abs=0.02)


def test_floor_height_of_empty_input_raises():
    with pytest.raises(EmptyScanError):
        detect_floor_height(np.zeros((0, 3)))
    with pytest.raises(EmptyScanError):
        detect_floor_height(np.full((4, 3), np.nan))


def test_floor_mask_selects_the_band_around_the_floor():
    points = np.array([[0, 0, 0.0], [0, 0, 0.04], [0, 0, -0.05], [0, 0, 0.06], [0, 0, 1.0]])
    np.testing.assert_array_equal(floor_mask(points, 0.0, 0.05), [True, True, True, False, False])


def test_floor_positions_lie_on_observed_floor_points():
    rng = np.random.default_rng(6)
    # Floor only observed in the left half of the room.
    floor = slab(rng, 5000, (0, 2), (0, 4), 0.0)
    wall = np.column_stack([np.full(3000, 4.0), rng.uniform(0, 4, 3000), rng.uniform(0.1, 2.5, 3000)])
    points = np.concatenate([floor, wall])
    xy = sample_floor_positions(points, 0.0, 500, np.random.default_rng(7))
    assert xy.shape == (500, 2)
    assert xy[:, 0].max() <= 2.0 and xy[:, 0].min() >= 0.0
    # Each position is the xy of a floor point.
    assert np.isin(xy[:, 0], floor[:, 0]).all()


def test_floor_positions_respect_the_margin():
    rng = np.random.default_rng(8)
    points = slab(rng, 5000, (0, 4), (0, 3), 0.0)
    xy = sample_floor_positions(points, 0.0, 1000, rng, margin=0.5)
    assert xy[:, 0].min() >= 0.5 - 1e-3 and xy[:, 0].max() <= 3.5 + 1e-3
    assert xy[:, 1].min() >= 0.5 - 1e-3 and xy[:, 1].max() <= 2.5 + 1e-3


def test_floor_positions_fall_back_to_the_bounding_box_without_floor():
    rng = np.random.default_rng(9)
    points = np.column_stack([rng.uniform(-1, 1, 100), rng.uniform(2, 3, 100), rng.uniform(1, 2, 100)])
    xy = sample_floor_positions(points, 0.0, 300, rng)
    assert xy.shape == (300, 2)
    assert np.all((xy[:, 0] >= -1) & (xy[:, 0] <= 1) & (xy[:, 1] >= 2) & (xy[:, 1] <= 3))
    assert np.ptp(xy[:, 0]) > 1.5  # spread over the box, not stuck on the scan's points


def test_floor_positions_are_deterministic_for_a_fixed_seed():
    points = room(np.random.default_rng(10))
    first = sample_floor_positions(points, 0.3, 20, np.random.default_rng(11))
    second = sample_floor_positions(points, 0.3, 20, np.random.default_rng(11))
    np.testing.assert_array_equal(first, second)


SCANNET_SUBSAMPLED = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "scannet" / "preprocessed"
    / "votenet_scannet_train_detection_data"
)
NYU40_FLOOR = 2


def test_floor_height_matches_the_labelled_floor_of_real_scannet_scans():
    if not SCANNET_SUBSAMPLED.is_dir():
        pytest.skip(f"real ScanNet sample data not found at {SCANNET_SUBSAMPLED}")
    scans = sorted(SCANNET_SUBSAMPLED.glob("*_vert.npy"))
    assert scans, "no *_vert.npy in the ScanNet sample folder"
    flat_floors = 0
    for vert_path in scans:
        xyz = np.load(vert_path)[:, :3]
        labels = np.load(str(vert_path).replace("_vert.npy", "_sem_label.npy"))
        floor_z = np.sort(xyz[labels == NYU40_FLOOR, 2])
        detected = detect_floor_height(xyz)
        low, p5, median, p95, high = np.quantile(floor_z, [0.01, 0.05, 0.5, 0.95, 0.99])
        # Some reconstructions have sloped floors spanning tens of cm: the detected height
        # must still be a height where labelled floor is.
        assert low <= detected <= high, vert_path.name
        if p95 - p5 < 0.15:  # a level floor: the detected height is its height
            flat_floors += 1
            assert detected == pytest.approx(median, abs=0.03), vert_path.name
    assert flat_floors >= 5
