"""Tests for the simulated depth scanner."""

import numpy as np
import pytest

from cad2scan.synth import primitives as P
from cad2scan.synth.rooms import WALL_THICKNESS, Room, make_room
from cad2scan.synth.scanner import ScannerConfig, choose_viewpoints, sample_room_surface, scan_room

CLEAN = dict(dropout=0.0, holes=0, outlier_fraction=0.0, noise_base=0.001, noise_quadratic=0.0, max_points=None)
FLOOR = (P.box([-0.1, -0.1, -0.05], [4.1, 4.1, 0.0]), 2)
BOX = (P.box([2.8, 1.7, 0.0], [3.3, 2.3, 0.6]), 29)
EYE = np.array([[1.0, 2.0, 1.5]])


def test_box_behind_a_wall_is_not_scanned():
    wall = (P.box([1.9, 0.0, 0.0], [2.0, 4.0, 2.5]), 1)
    room = Room(parts=[FLOOR, wall, BOX], room_type="test", size=(4.0, 4.0, 2.5))
    scan = scan_room(room, np.random.default_rng(0), ScannerConfig(**CLEAN), viewpoints=EYE)
    assert (scan["label"] == 1).sum() > 1000  # the wall itself is seen
    assert (scan["label"] == 29).sum() == 0
    # nor the floor behind the wall
    floor = scan["coord"][scan["label"] == 2]
    assert len(floor) > 100 and floor[:, 0].max() < 1.95


def test_only_the_faces_towards_the_sensor_are_scanned():
    room = Room(parts=[FLOOR, BOX], room_type="test", size=(4.0, 4.0, 2.5))
    scan = scan_room(room, np.random.default_rng(0), ScannerConfig(**CLEAN), viewpoints=EYE)
    box = scan["coord"][scan["label"] == 29]
    assert len(box) > 100
    near_face = np.abs(box[:, 0] - 2.8) < 0.01
    top_face = np.abs(box[:, 2] - 0.6) < 0.01
    assert near_face.sum() > 50 and top_face.sum() > 50
    far_face = (box[:, 0] > 3.3 - 0.01) & (box[:, 2] < 0.55)
    side_faces = (np.abs(box[:, 1] - 2.0) > 0.3 - 0.01) & (box[:, 2] < 0.55) & (box[:, 0] > 2.82)
    assert far_face.sum() == 0 and side_faces.sum() == 0  # faces turned away are unseen
    # the floor right behind the box is in its shadow
    shadow = scan["coord"][(scan["label"] == 2)]
    in_shadow = (shadow[:, 0] > 3.35) & (shadow[:, 0] < 3.6) & (np.abs(shadow[:, 1] - 2.0) < 0.15)
    assert in_shadow.sum() == 0


def test_point_density_falls_with_distance():
    floor = (P.box([0.0, 0.0, -0.05], [10.0, 10.0, 0.0]), 2)
    room = Room(parts=[floor], room_type="test", size=(10.0, 10.0, 3.0))
    cfg = ScannerConfig(**CLEAN)
    cfg.max_range = 6.0
    eye = np.array([[5.0, 5.0, 1.5]])
    scan = scan_room(room, np.random.default_rng(1), cfg, viewpoints=eye)
    dist = np.linalg.norm(scan["coord"][:, :2] - eye[0, :2], axis=1)

    def density(r0, r1):
        return ((dist >= r0) & (dist < r1)).sum() / (np.pi * (r1**2 - r0**2))

    near, middle, far = density(0.5, 1.0), density(2.0, 2.5), density(3.5, 4.0)
    assert near > 1.5 * middle > 0
    assert middle > 1.5 * far > 0
    # up close the scan is dense: ~1 / spacing^2 points per m^2
    assert near > 0.5 / cfg.sample_spacing**2


def test_scan_has_the_contract_dtypes_and_labels_of_the_room():
    room = make_room(np.random.default_rng(3), "bedroom")
    cfg = ScannerConfig(sample_spacing=0.05, num_viewpoints=3, max_points=20000)
    scan = scan_room(room, np.random.default_rng(0), cfg)
    n = len(scan["coord"])
    assert 2000 < n <= 20000
    assert scan["coord"].dtype == np.float32 and scan["coord"].shape == (n, 3)
    assert scan["color"].dtype == np.uint8 and scan["color"].shape == (n, 3)
    assert scan["label"].dtype == np.int64 and scan["label"].shape == (n,)
    assert set(np.unique(scan["label"])) <= room.labels() | {0}
    assert {1, 2, 4} <= set(np.unique(scan["label"]))
    assert (scan["label"] == 0).sum() == round(cfg.outlier_fraction * n) or (scan["label"] == 0).sum() > 0


def test_scan_is_deterministic_for_a_seed():
    room = make_room(np.random.default_rng(5), "bathroom")
    cfg = ScannerConfig(sample_spacing=0.05, num_viewpoints=2)
    a = scan_room(room, np.random.default_rng(11), cfg)
    b = scan_room(room, np.random.default_rng(11), cfg)
    for key in ("coord", "color", "label"):
        np.testing.assert_array_equal(a[key], b[key])


def test_max_points_caps_the_scan():
    room = make_room(np.random.default_rng(2), "office")
    scan = scan_room(room, np.random.default_rng(0), ScannerConfig(sample_spacing=0.04, max_points=5000))
    assert len(scan["coord"]) == 5000


def test_surface_samples_skip_the_outside_of_the_walls():
    room = make_room(np.random.default_rng(0), "kitchen")
    dense = sample_room_surface(room, np.random.default_rng(0), 0.05)
    sx, sy, _ = room.size
    p, n = dense["points"], dense["normals"]
    t = WALL_THICKNESS
    outer = (
        ((np.abs(p[:, 0] + t) < 1e-6) & (n[:, 0] < -0.9)) | ((np.abs(p[:, 0] - sx - t) < 1e-6) & (n[:, 0] > 0.9))
        | ((np.abs(p[:, 1] + t) < 1e-6) & (n[:, 1] < -0.9)) | ((np.abs(p[:, 1] - sy - t) < 1e-6) & (n[:, 1] > 0.9))
    )
    assert outer.sum() == 0
    assert p[:, 2].min() > -1e-6  # nor the underside of the floor slab
    # both faces of the walls' thickness exist, the inner one is sampled
    assert (np.abs(p[:, 0]) < 1e-6).sum() > 100
    # doors and windows inside the wall openings are sampled
    assert {8, 9} <= set(np.unique(dense["label"]).tolist())
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)


def test_viewpoints_are_inside_the_room_at_eye_height():
    room = make_room(np.random.default_rng(4), "living_room")
    cfg = ScannerConfig(num_viewpoints=5)
    eyes = choose_viewpoints(room, np.random.default_rng(0), cfg)
    sx, sy, _ = room.size
    assert eyes.shape == (5, 3)
    assert np.all((eyes[:, 0] > 0) & (eyes[:, 0] < sx) & (eyes[:, 1] > 0) & (eyes[:, 1] < sy))
    assert np.all((eyes[:, 2] >= 1.2) & (eyes[:, 2] <= 1.8))
    assert len(np.unique(np.round(eyes[:, :2], 3), axis=0)) == 5


@pytest.mark.parametrize("fraction", [0.0, 0.01])
def test_outliers_are_unannotated(fraction):
    room = Room(parts=[FLOOR, BOX], room_type="test", size=(4.0, 4.0, 2.5))
    cfg = ScannerConfig(**{**CLEAN, "outlier_fraction": fraction})
    scan = scan_room(room, np.random.default_rng(0), cfg, viewpoints=EYE)
    assert (scan["label"] == 0).sum() == round(fraction * len(scan["label"]))
