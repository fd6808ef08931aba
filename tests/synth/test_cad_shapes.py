"""Tests for the closed-mesh primitives and the CAD-style model library."""

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cad2scan.classes import load_size_priors
from cad2scan.errors import UnknownClassError
from cad2scan.synth import cad_negatives as N
from cad2scan.synth import primitives as P
from cad2scan.synth.cad_shapes import (
    ALL_CLASSES,
    NEGATIVE_CLASSES,
    TARGET_CLASSES,
    UNIT_SCALE_RANGE,
    make_cad_model,
    make_cad_model_metric,
)

SEEDS = range(5)


def _every_edge_shared_by_two_faces(mesh) -> bool:
    return bool(np.all(P.edge_use_counts(mesh) == 2))


PRIMITIVES = {
    "box": lambda: P.box([0, 0, 0], [1, 2, 3]),
    "rotated_box": lambda: P.box_centered([1, 2, 0.5], [1, 1, 1], angle_z=0.7),
    "beam": lambda: P.beam([0, 0, 0], [0.3, 0.2, 1.0], 0.05),
    "cylinder": lambda: P.cylinder(0.5, 2.0, 12),
    "cone": lambda: P.frustum(0.5, 0.0, 1.0, 10),
    "frustum": lambda: P.frustum(0.5, 0.2, 1.0, 10),
    "cylinder_between": lambda: P.cylinder_between([0, 0, 0], [1, -1, 0.5], 0.1),
    "sphere": lambda: P.sphere(0.7),
    "ellipsoid": lambda: P.ellipsoid([1.0, 0.5, 0.2]),
    "superellipsoid": lambda: P.superellipsoid([1.0, 0.6, 0.2], 0.25),
    "torus": lambda: P.torus(1.0, 0.2),
    "cup": lambda: P.revolve([(0.3, 0.0), (0.4, 0.3), (0.37, 0.3), (0.27, 0.03), (0.0, 0.03)]),
    "l_prism": lambda: P.prism([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], 0.0, 0.5),
    "thick_sheet": lambda: P.thick_sheet(
        np.stack(np.meshgrid(np.linspace(0, 1, 6), [0.0], np.linspace(0, 2, 4), indexing="ij"), -1)[:, 0]
        + np.array([0.0, 0.05, 0.0]) * np.sin(np.linspace(0, 6, 6))[:, None, None],
        (0.0, 0.01, 0.0),
    ),
    "mirrored_box": lambda: P.transform(P.box([0, 0, 0], [1, 1, 1]), scale=[-1, 1, 1]),
}


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_is_closed_two_manifold_with_outward_normals(name):
    mesh = PRIMITIVES[name]()
    assert _every_edge_shared_by_two_faces(mesh)
    assert P.is_closed_outward(mesh)
    assert P.signed_volume(mesh) > 0


def test_box_volume_and_cylinder_volume_match_formulas():
    assert P.signed_volume(P.box([0, 0, 0], [1, 2, 3])) == pytest.approx(6.0)
    n = 64
    polygon_area = 0.5 * n * np.sin(2 * np.pi / n)  # inscribed n-gon of radius 1
    assert P.signed_volume(P.cylinder(1.0, 2.0, n)) == pytest.approx(2.0 * polygon_area)


def test_transform_rotates_then_translates_and_keeps_volume():
    mesh = P.transform(P.box([0, 0, 0], [2, 1, 1]), P.rotation_z(np.pi / 2), translation=(5, 0, 0))
    lo, hi = mesh.bounds()
    np.testing.assert_allclose(lo, [4, 0, 0], atol=1e-12)
    np.testing.assert_allclose(hi, [5, 2, 1], atol=1e-12)
    assert P.signed_volume(mesh) == pytest.approx(2.0)


def test_flipped_faces_are_detected_as_not_outward():
    mesh = P.box([0, 0, 0], [1, 1, 1])
    mesh.faces = mesh.faces[:, ::-1].copy()
    assert not P.is_closed_outward(mesh)


MODELNET40 = {
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard",
    "lamp", "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio",
    "range_hood", "sink", "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase",
    "wardrobe", "xbox",
}
NEW_NEGATIVES = tuple(N.NEGATIVE_BUILDERS)


def _part_volumes(mesh) -> np.ndarray:
    """(parts,) signed volume of each connected part (parts share no vertices)."""
    f = mesh.faces
    n = len(mesh.vertices)
    graph = coo_matrix((np.ones(f.size), (f.ravel(), np.repeat(f[:, 0], 3))), shape=(n, n))
    n_parts, part_of_vertex = connected_components(graph, directed=False)
    a, b, c = (mesh.vertices[f[:, i]] for i in range(3))
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    return np.bincount(part_of_vertex[f[:, 0]], weights=volume, minlength=n_parts)


def test_class_lists_have_the_eleven_targets_and_disjoint_negatives():
    assert TARGET_CLASSES == (
        "bathtub", "bed", "bookshelf", "chair", "curtain", "desk",
        "door", "sink", "sofa", "table", "toilet",
    )
    assert {"lamp", "monitor", "plant"} <= set(NEGATIVE_CLASSES)
    assert not set(TARGET_CLASSES) & set(NEGATIVE_CLASSES)
    assert len(set(ALL_CLASSES)) == len(ALL_CLASSES)


def test_negatives_are_many_modelnet40_classes_including_large_and_architectural_ones():
    assert set(ALL_CLASSES) <= MODELNET40
    assert len(NEGATIVE_CLASSES) >= 15
    assert {"dresser", "tv_stand", "bench", "stairs", "mantel", "range_hood", "glass_box", "piano"} <= set(
        NEGATIVE_CLASSES
    )
    # the original seven keep their order, so their generated models do not change
    assert NEGATIVE_CLASSES[:7] == ("lamp", "monitor", "plant", "bottle", "vase", "night_stand", "wardrobe")


def test_every_negative_class_has_its_own_size_prior():
    priors = load_size_priors()
    missing = [name for name in NEGATIVE_CLASSES if name not in priors.sizes]
    assert not missing, f"no size prior for {missing} (they would get the default box)"


@pytest.mark.parametrize("class_name", ALL_CLASSES)
def test_every_class_gives_a_closed_non_degenerate_mesh_standing_on_the_floor(class_name):
    for seed in SEEDS:
        mesh = make_cad_model(class_name, np.random.default_rng(seed))
        assert np.isfinite(mesh.vertices).all()
        assert len(mesh.faces) >= 12
        assert P.is_closed_outward(mesh), f"{class_name} seed {seed}"
        lo, hi = mesh.bounds()
        assert lo[2] == pytest.approx(0.0, abs=1e-9)
        assert np.all(hi - lo > 1e-3)
        assert mesh.triangle_areas().min() >= 0.0 and mesh.surface_area() > 0


@pytest.mark.parametrize("class_name", ALL_CLASSES)
def test_every_part_of_every_model_is_closed_with_positive_volume(class_name):
    for seed in range(10):
        mesh = make_cad_model_metric(class_name, np.random.default_rng(seed))
        volumes = _part_volumes(mesh)
        assert len(volumes) >= 1
        assert volumes.min() > 0, f"{class_name} seed {seed}: a part is inside out or flat ({volumes.min():.2e})"


@pytest.mark.parametrize("class_name", NEW_NEGATIVES)
def test_new_negatives_vary_in_their_parts_across_seeds(class_name):
    part_counts = {len(_part_volumes(make_cad_model_metric(class_name, np.random.default_rng(s)))) for s in range(8)}
    assert len(part_counts) >= 2, f"{class_name}: every seed builds the same number of parts"


@pytest.mark.parametrize("class_name", NEW_NEGATIVES)
def test_new_negatives_are_built_near_the_height_their_size_prior_scales_them_to(class_name):
    """Training rescales a negative to its prior height: a model far off it would come out
    absurdly large or small (a closed laptop blown up to 0.25 m thick, a 3-step stair)."""
    prior_height = load_size_priors().size_of(class_name)[2]
    for seed in range(10):
        height = make_cad_model_metric(class_name, np.random.default_rng(seed)).bounds()[1][2]
        assert 0.4 <= height / prior_height <= 2.5, f"{class_name} seed {seed}: {height:.2f} m vs {prior_height} m"


@pytest.mark.parametrize("class_name", NEW_NEGATIVES)
def test_same_seed_gives_the_same_new_negative(class_name):
    a = make_cad_model(class_name, np.random.default_rng(11))
    b = make_cad_model(class_name, np.random.default_rng(11))
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)


def test_every_model_stays_light_enough_for_a_fast_demo():
    for class_name in ALL_CLASSES:
        faces = [len(make_cad_model_metric(class_name, np.random.default_rng(s)).faces) for s in range(4)]
        assert max(faces) < 8000, f"{class_name}: {max(faces)} faces"


def test_tapered_box_has_the_prismatoid_volume():
    # square frustum 2 x 2 -> 1 x 1, height 1: V = h / 3 * (A0 + A1 + sqrt(A0 * A1)) = 7 / 3
    mesh = N._tapered_box((-1, -1, 1, 1), (-0.5, -0.5, 0.5, 0.5), 0.0, 1.0)
    assert P.is_closed_outward(mesh)
    assert P.signed_volume(mesh) == pytest.approx(7.0 / 3.0)


def test_extrude_xz_turns_a_profile_into_a_prism_along_y():
    mesh = N._extrude_xz([(-1.0, 0.0), (1.0, 0.0), (0.0, 1.5)], -2.0, 1.0)  # tent-like triangle
    assert P.is_closed_outward(mesh)
    assert P.signed_volume(mesh) == pytest.approx(0.5 * 2.0 * 1.5 * 3.0)
    lo, hi = mesh.bounds()
    np.testing.assert_allclose(lo, [-1.0, -2.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(hi, [1.0, 1.0, 1.5], atol=1e-12)


@pytest.mark.parametrize("class_name", ALL_CLASSES)
def test_shapes_of_a_class_vary_across_seeds(class_name):
    proportions = []
    for seed in range(6):
        lo, hi = make_cad_model_metric(class_name, np.random.default_rng(seed)).bounds()
        extent = hi - lo
        proportions.append(extent / extent.max())
    spread = np.ptp(np.array(proportions), axis=0).max()
    assert spread > 0.05, f"{class_name}: bounding-box proportions barely change ({spread:.3f})"


def test_models_are_in_arbitrary_units_and_random_azimuth():
    metric_heights, unit_heights, footprints = [], [], []
    for seed in SEEDS:
        metric = make_cad_model_metric("chair", np.random.default_rng(seed))
        scaled = make_cad_model("chair", np.random.default_rng(seed))
        metric_heights.append(metric.bounds()[1][2])
        unit_heights.append(scaled.bounds()[1][2])
        lo, hi = scaled.bounds()
        footprints.append((hi - lo)[0] / (hi - lo)[1])
    ratio = np.array(unit_heights) / np.array(metric_heights)
    assert np.all((ratio >= UNIT_SCALE_RANGE[0]) & (ratio <= UNIT_SCALE_RANGE[1]))
    assert np.ptp(ratio) > 1.0  # the unit differs per model
    assert np.ptp(footprints) > 0.05  # the azimuth differs per model


@pytest.mark.parametrize(
    "class_name, height_range",
    [("chair", (0.65, 1.2)), ("table", (0.35, 0.85)), ("door", (1.9, 2.3)),
     ("bed", (0.6, 2.2)), ("toilet", (0.6, 1.0)), ("bathtub", (0.4, 0.9)), ("bookshelf", (0.75, 2.3)),
     ("dresser", (0.7, 1.7)), ("tv_stand", (0.35, 0.7)), ("stool", (0.4, 0.85)), ("mantel", (0.95, 1.8)),
     ("piano", (0.7, 1.7)), ("person", (1.2, 2.3)), ("keyboard", (0.015, 0.08)), ("laptop", (0.12, 0.35))],
)
def test_metric_models_have_real_world_heights(class_name, height_range):
    for seed in SEEDS:
        height = make_cad_model_metric(class_name, np.random.default_rng(seed)).bounds()[1][2]
        assert height_range[0] <= height <= height_range[1], f"{class_name} seed {seed}: {height:.2f} m"


def test_same_seed_gives_the_same_model():
    a = make_cad_model("sofa", np.random.default_rng(3))
    b = make_cad_model("sofa", np.random.default_rng(3))
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)


def test_unknown_class_raises():
    with pytest.raises(UnknownClassError, match="airplane"):
        make_cad_model("airplane", np.random.default_rng(0))
