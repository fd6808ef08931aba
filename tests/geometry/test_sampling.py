"""Uniform and Poisson-disk sampling on mesh surfaces."""

import numpy as np
import pytest

from cad2scan.errors import EmptyScanError
from cad2scan.geometry.mesh import Mesh
from cad2scan.geometry.sampling import (
    poisson_disk_sample,
    sample_surface_uniform,
    uniformity,
)


def unit_cube() -> Mesh:
    """Axis-aligned cube [-0.5, 0.5]^3, 12 triangles."""
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    faces = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
             [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    return Mesh(corners, np.array(faces))


def on_cube_surface(points: np.ndarray, atol: float = 1e-5) -> np.ndarray:
    """(N,) bool: inside the cube and on (at least) one of its faces."""
    inside = np.all(np.abs(points) <= 0.5 + atol, axis=1)
    on_face = np.any(np.abs(np.abs(points) - 0.5) <= atol, axis=1)
    return inside & on_face


def test_poisson_disk_returns_exactly_n_float32_points():
    for n in (1, 100, 1000, 4096):
        points = poisson_disk_sample(unit_cube(), n, np.random.default_rng(n))
        assert points.shape == (n, 3)
        assert points.dtype == np.float32


def test_poisson_disk_points_lie_on_the_surface():
    points = poisson_disk_sample(unit_cube(), 2048, np.random.default_rng(0))
    assert on_cube_surface(points).all()


def test_poisson_disk_covers_every_face_evenly():
    points = poisson_disk_sample(unit_cube(), 3000, np.random.default_rng(1))
    face_of = []
    for axis in range(3):
        for sign in (-1, 1):
            face_of.append(np.abs(points[:, axis] - sign * 0.5) <= 1e-5)
    counts = np.array([mask.sum() for mask in face_of])
    # 6 equal faces of 500 points each (edge points count on two faces).
    assert counts.min() > 450 and counts.max() < 560
    # Each face's four quadrants are all populated.
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for sign in (-1, 1):
            face = points[np.abs(points[:, axis] - sign * 0.5) <= 1e-5][:, others]
            quadrant = (face[:, 0] > 0).astype(int) * 2 + (face[:, 1] > 0)
            assert np.bincount(quadrant, minlength=4).min() > 90


def test_poisson_disk_is_blue_noise_compared_with_uniform_sampling():
    mesh = unit_cube()
    blue = uniformity(poisson_disk_sample(mesh, 4096, np.random.default_rng(2)))
    white = uniformity(sample_surface_uniform(mesh, 4096, np.random.default_rng(2)))
    assert white["nn_cv"] > 0.4  # Poisson process: about 0.52
    assert blue["nn_cv"] < 0.5 * white["nn_cv"]
    assert blue["min_nn_rel"] > 0.5
    assert white["min_nn_rel"] < 0.1
    # Blue noise spreads the same number of points wider apart.
    assert blue["mean_nn"] > 1.3 * white["mean_nn"]


def test_poisson_disk_is_deterministic_for_a_fixed_seed():
    first = poisson_disk_sample(unit_cube(), 1500, np.random.default_rng(7))
    second = poisson_disk_sample(unit_cube(), 1500, np.random.default_rng(7))
    other = poisson_disk_sample(unit_cube(), 1500, np.random.default_rng(8))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_poisson_disk_on_thin_long_shape_still_returns_n_points():
    # A needle-like box: far more points fit than a flat-sheet radius estimate predicts.
    box = unit_cube()
    needle = Mesh(box.vertices * np.array([0.01, 0.01, 10.0]), box.faces)
    points = poisson_disk_sample(needle, 2000, np.random.default_rng(3))
    assert points.shape == (2000, 3)
    assert np.all(np.abs(points[:, :2]) <= 0.005 + 1e-6)
    assert uniformity(points)["min_nn_rel"] > 0.3


def test_poisson_disk_ignores_degenerate_faces():
    box = unit_cube()
    vertices = np.vstack([box.vertices, [[0, 0, 3.0]]])
    faces = np.vstack([box.faces, [[8, 8, 8], [0, 0, 1]]])  # zero-area faces
    points = poisson_disk_sample(Mesh(vertices, faces), 500, np.random.default_rng(4))
    assert on_cube_surface(points).all()


def test_zero_area_mesh_raises_empty_scan_error_with_its_name():
    flat = Mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(EmptyScanError, match="chair_0001.off"):
        poisson_disk_sample(flat, 100, np.random.default_rng(0), name="chair_0001.off")
    with pytest.raises(EmptyScanError, match="<mesh>"):
        sample_surface_uniform(Mesh(np.zeros((0, 3)), np.zeros((0, 3))), 10, np.random.default_rng(0))


def test_rng_must_be_given():
    with pytest.raises(TypeError):
        poisson_disk_sample(unit_cube(), 10)


def test_uniform_sampling_is_area_weighted():
    # Two unit squares side by side in z=0, one 3 times larger in area.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                         [2, 0, 0], [5, 0, 0], [5, 1, 0], [2, 1, 0]], dtype=float)
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    points = sample_surface_uniform(Mesh(vertices, faces), 20000, np.random.default_rng(5))
    assert points.shape == (20000, 3) and points.dtype == np.float64
    share_big = np.mean(points[:, 0] >= 2)
    assert abs(share_big - 0.75) < 0.015
    assert np.all(points[:, 2] == 0)
    assert not np.any((points[:, 0] > 1) & (points[:, 0] < 2))


def test_uniformity_of_a_regular_grid_has_zero_spread():
    grid = np.stack(np.meshgrid(np.arange(10), np.arange(10), [0.0]), axis=-1).reshape(-1, 3)
    stats = uniformity(grid * 0.1)
    assert stats["nn_cv"] == pytest.approx(0.0, abs=1e-9)
    assert stats["min_nn_rel"] == pytest.approx(1.0)
    assert stats["mean_nn"] == pytest.approx(0.1)


def test_trimming_removes_the_surplus_where_points_are_closest():
    from cad2scan.geometry.sampling import _trim_closest

    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0), [0.0]), axis=-1).reshape(-1, 3)
    crowded = np.vstack([grid, [[0.1, 0.0, 0.0], [5.0, 5.1, 0.0], [9.0, 8.9, 0.0]]])
    keep = _trim_closest(crowded, np.ones(len(crowded), dtype=bool), 3)
    assert keep.sum() == len(grid)
    # One point of each of the three close pairs went, never both.
    for pair in ([0, 100], [55, 101], [99, 102]):
        assert keep[pair].sum() == 1


def test_topping_up_adds_the_candidates_farthest_from_the_kept_set():
    from cad2scan.geometry.sampling import _top_up_farthest

    line = np.column_stack([np.arange(11.0), np.zeros(11), np.zeros(11)])
    keep = np.zeros(11, dtype=bool)
    keep[[0, 1, 2, 3]] = True
    out = _top_up_farthest(line, keep, 2)
    assert out.sum() == 6
    assert out[10]  # the farthest point is added first
    assert out[[0, 1, 2, 3]].all()


def test_poisson_disk_works_far_from_the_origin_and_in_any_unit():
    box = unit_cube()
    far = Mesh(box.vertices * 250.0 + 1e5, box.faces)  # CAD units, large offset
    points = poisson_disk_sample(far, 1000, np.random.default_rng(12)).astype(np.float64)
    assert points.shape == (1000, 3)
    assert uniformity(points - 1e5)["nn_cv"] < 0.25


def test_min_degree_set_is_maximal_independent_and_prefers_low_degree_nodes():
    from cad2scan.geometry.sampling import _min_degree_independent_set

    # Star 0-{1,2,3} plus an edge 3-4: the leaves 1, 2, 4 exclude fewer nodes than the hub.
    lo = np.array([0, 0, 0, 3], dtype=np.int64)
    hi = np.array([1, 2, 3, 4], dtype=np.int64)
    keep = _min_degree_independent_set(6, lo, hi)
    np.testing.assert_array_equal(np.flatnonzero(keep), [1, 2, 4, 5])  # 5 is isolated

    rng = np.random.default_rng(0)
    pairs = np.unique(np.sort(rng.integers(0, 300, size=(900, 2)), axis=1), axis=0)
    pairs = pairs[pairs[:, 0] < pairs[:, 1]]
    keep = _min_degree_independent_set(300, pairs[:, 0], pairs[:, 1])
    assert not np.any(keep[pairs[:, 0]] & keep[pairs[:, 1]])  # independent
    covered = keep.copy()
    covered[pairs[keep[pairs[:, 0]], 1]] = True
    covered[pairs[keep[pairs[:, 1]], 0]] = True
    assert covered.all()  # maximal: every node is kept or next to a kept one


def test_topping_up_with_given_distances_matches_the_tree_query():
    from cad2scan.geometry.sampling import _top_up_farthest

    rng = np.random.default_rng(5)
    points = rng.random((400, 3))
    keep = np.zeros(400, dtype=bool)
    keep[:50] = True
    from scipy.spatial import cKDTree

    to_kept = np.full(400, np.inf)
    to_kept[~keep] = cKDTree(points[keep]).query(points[~keep])[0]
    np.testing.assert_array_equal(
        _top_up_farthest(points, keep, 20, to_kept), _top_up_farthest(points, keep, 20)
    )


def test_poisson_disk_spacing_is_near_regular_on_a_cube():
    points = poisson_disk_sample(unit_cube(), 4096, np.random.default_rng(9))
    stats = uniformity(points)
    assert stats["nn_cv"] < 0.09  # random-order dart throwing gives ~0.12
    assert stats["min_nn_rel"] > 0.7


def test_weighted_min_degree_set_is_maximal_independent_and_prefers_light_nodes():
    from cad2scan.geometry.sampling import _min_degree_independent_set

    # Path 0-1-2 with a heavy edge 0-1: node 2 (weight 1) goes before 0 (weight 5), so
    # 1 drops out and 0 is kept too; unweighted, the ends tie and the same set results.
    lo = np.array([0, 1], dtype=np.int64)
    hi = np.array([1, 2], dtype=np.int64)
    keep = _min_degree_independent_set(3, lo, hi, np.array([5.0, 1.0]))
    np.testing.assert_array_equal(np.flatnonzero(keep), [0, 2])
    # Triangle 0-1-2, weighted degrees 5, 5, 4: the lightest node wins (unweighted, 0 would).
    lo = np.array([0, 0, 1], dtype=np.int64)
    hi = np.array([1, 2, 2], dtype=np.int64)
    keep = _min_degree_independent_set(3, lo, hi, np.array([3.0, 2.0, 2.0]))
    np.testing.assert_array_equal(np.flatnonzero(keep), [2])

    rng = np.random.default_rng(1)
    pairs = np.unique(np.sort(rng.integers(0, 300, size=(900, 2)), axis=1), axis=0)
    pairs = pairs[pairs[:, 0] < pairs[:, 1]]
    weight = rng.uniform(1.0, 5.0, len(pairs))
    keep = _min_degree_independent_set(300, pairs[:, 0], pairs[:, 1], weight)
    assert not np.any(keep[pairs[:, 0]] & keep[pairs[:, 1]])
    covered = keep.copy()
    covered[pairs[keep[pairs[:, 0]], 1]] = True
    covered[pairs[keep[pairs[:, 1]], 0]] = True
    assert covered.all()


def test_stratified_candidates_give_each_face_its_area_share_within_one_point():
    from cad2scan.geometry.sampling import _sample_stratified

    # Two squares of area 1 and 3 (2 triangles each) in the plane z = 0.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                         [2, 0, 0], [2 + np.sqrt(3), 0, 0], [2 + np.sqrt(3), np.sqrt(3), 0],
                         [2, np.sqrt(3), 0]], dtype=float)
    mesh = Mesh(vertices, np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]]))
    areas = mesh.triangle_areas()
    points = _sample_stratified(mesh, areas, 1000, np.random.default_rng(0))
    assert points.shape == (1000, 3)
    assert np.all(points[:, 2] == 0.0)
    in_small = points[:, 0] <= 1.0 + 1e-12
    assert abs(int(in_small.sum()) - 250) <= 1
    # Low discrepancy: the counts in a 4 x 4 grid over the small square vary far less
    # than iid sampling's (variance ~ 250 / 16 = 15.6).
    small = points[in_small]
    cell = np.minimum((small[:, :2] * 4).astype(int), 3)
    counts = np.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16)
    assert counts.sum() == len(small)
    assert counts.var() < 7.0
    # Shuffled: the first half is not all on one face.
    assert 0.1 < in_small[:500].mean() < 0.4
