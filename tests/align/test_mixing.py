"""Mixing augmented CAD models into scans, and the scene-free baseline layout."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from cad2scan.align.mixing import MixConfig, mix_models_into_scene, place_models_alone

FLOOR_Z = 0.25


def room_scan(rng, floor_z=FLOOR_Z, size=(6.0, 5.0)):
    """A room: a noisy floor of size ``size`` at ``floor_z`` and two walls (metres, z up)."""
    w, d = size
    floor = np.column_stack([rng.uniform(0, w, 20000), rng.uniform(0, d, 20000),
                             floor_z + rng.normal(0, 0.003, 20000)])
    wall_x = np.column_stack([np.zeros(5000), rng.uniform(0, d, 5000), rng.uniform(floor_z + 0.1, 2.8, 5000)])
    wall_y = np.column_stack([rng.uniform(0, w, 5000), np.full(5000, d), rng.uniform(floor_z + 0.1, 2.8, 5000)])
    return np.concatenate([floor, wall_x, wall_y]).astype(np.float32)


def model(rng, size=(0.6, 0.5, 0.8), n=1500):
    """Model coordinates: xy centred at 0, bottom at z = 0."""
    points = rng.uniform(0, 1, (n, 3)) * np.asarray(size)
    points[:, :2] -= np.asarray(size[:2]) / 2
    return points


def models_list(rng, count=4):
    return [(model(rng, size=(0.4 + 0.2 * i, 0.5, 0.5 + 0.1 * i)), 10 + i) for i in range(count)]


def test_mixed_models_rest_on_the_floor():
    rng = np.random.default_rng(0)
    scene, models = room_scan(rng), models_list(rng)
    out = mix_models_into_scene(scene, models, np.random.default_rng(1), MixConfig(overlap="keep"), floor_z=FLOOR_Z)
    for model_id in range(len(models)):
        z = out["coord"][out["model_id"] == model_id, 2]
        assert z.min() == pytest.approx(FLOOR_Z, abs=0.02)
        height = np.ptp(models[model_id][0][:, 2])
        assert z.max() == pytest.approx(FLOOR_Z + height, abs=0.02)


def test_floor_is_detected_when_not_given():
    rng = np.random.default_rng(2)
    scene, models = room_scan(rng, floor_z=-1.3), models_list(rng, 2)
    out = mix_models_into_scene(scene, models, np.random.default_rng(3), MixConfig(overlap="keep"))
    synthetic = out["coord"][out["is_synthetic"]]
    assert synthetic[:, 2].min() == pytest.approx(-1.3, abs=0.02)


def test_models_land_within_the_scene_floor_extent():
    rng = np.random.default_rng(4)
    scene = room_scan(rng, size=(6.0, 5.0))
    for seed in range(10):
        out = mix_models_into_scene(scene, models_list(rng, 3), np.random.default_rng(seed),
                                    MixConfig(overlap="keep"), floor_z=FLOOR_Z)
        synthetic = out["coord"][out["is_synthetic"]]
        # Footprints (radius <= 0.5 m here) kept inside the floor by the placement margin.
        assert synthetic[:, 0].min() >= -1e-3 and synthetic[:, 0].max() <= 6.0 + 1e-3
        assert synthetic[:, 1].min() >= -1e-3 and synthetic[:, 1].max() <= 5.0 + 1e-3


def test_models_are_placed_apart_when_the_floor_has_room():
    rng = np.random.default_rng(5)
    scene = room_scan(rng, size=(8.0, 8.0))
    models = [(model(rng, size=(0.5, 0.5, 0.7)), 1) for _ in range(4)]
    out = mix_models_into_scene(scene, models, np.random.default_rng(6), MixConfig(overlap="keep"), floor_z=FLOOR_Z)
    centres = np.array([out["coord"][out["model_id"] == i, :2].mean(axis=0) for i in range(4)])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2)[np.triu_indices(4, 1)]
    assert gaps.min() > 0.6  # footprint radius 0.35 each


def test_filter_mode_removes_exactly_the_scene_points_near_models():
    rng = np.random.default_rng(7)
    scene, models = room_scan(rng), models_list(rng)
    cfg = MixConfig(overlap="filter", overlap_radius=0.05)
    out = mix_models_into_scene(scene, models, np.random.default_rng(8), cfg, floor_z=FLOOR_Z)
    assert out["overlap_filtered"] is True
    synthetic = out["coord"][out["is_synthetic"]].astype(np.float64)
    dist, _ = cKDTree(synthetic).query(scene.astype(np.float64), k=1)
    expected_kept = np.flatnonzero(dist > 0.05)
    np.testing.assert_array_equal(out["scene_index"], expected_kept)
    assert len(expected_kept) < len(scene)  # models on the floor do overlap floor points
    np.testing.assert_array_equal(out["coord"][~out["is_synthetic"]], scene[expected_kept])


def test_keep_mode_keeps_every_scene_point():
    rng = np.random.default_rng(9)
    scene, models = room_scan(rng), models_list(rng)
    out = mix_models_into_scene(scene, models, np.random.default_rng(10), MixConfig(overlap="keep"), floor_z=FLOOR_Z)
    assert out["overlap_filtered"] is False
    np.testing.assert_array_equal(out["scene_index"], np.arange(len(scene)))
    np.testing.assert_array_equal(out["coord"][: len(scene)], scene)


def test_random_mode_flips_between_filter_and_keep():
    rng = np.random.default_rng(11)
    scene, models = room_scan(rng), models_list(rng, 1)
    cfg = MixConfig(overlap="random")
    flags = []
    for seed in range(40):
        out = mix_models_into_scene(scene, models, np.random.default_rng(seed), cfg, floor_z=FLOOR_Z)
        flags.append(out["overlap_filtered"])
        assert (len(out["scene_index"]) < len(scene)) == out["overlap_filtered"]
    assert 8 < sum(flags) < 32


def test_labels_and_model_ids_are_consistent():
    rng = np.random.default_rng(12)
    scene, models = room_scan(rng), models_list(rng)
    scene_labels = rng.integers(0, 40, len(scene))
    out = mix_models_into_scene(scene, models, np.random.default_rng(13), MixConfig(overlap="filter"),
                                floor_z=FLOOR_Z, scene_extras={"scene_label": scene_labels})
    total = len(out["scene_index"]) + sum(len(p) for p, _ in models)
    assert out["coord"].shape == (total, 3) and out["coord"].dtype == np.float32
    for key, dtype in (("label", np.int64), ("model_id", np.int64), ("is_synthetic", np.bool_)):
        assert out[key].shape == (total,) and out[key].dtype == dtype
    assert out["scene_index"].dtype == np.int64
    is_scene = ~out["is_synthetic"]
    assert np.all(out["label"][is_scene] == -1) and np.all(out["model_id"][is_scene] == -1)
    assert is_scene.sum() == len(out["scene_index"])
    for model_id, (points, label) in enumerate(models):
        mask = out["model_id"] == model_id
        assert mask.sum() == len(points)
        assert np.all(out["label"][mask] == label)
        # Only translated: same shape up to a shift.
        shift = out["coord"][mask] - points
        np.testing.assert_allclose(shift, shift[0] + np.zeros_like(shift), atol=1e-5)
    np.testing.assert_array_equal(out["scene_label"], scene_labels[out["scene_index"]])


def test_scene_extras_must_match_the_scene_and_not_clash():
    rng = np.random.default_rng(14)
    scene, models = room_scan(rng), models_list(rng, 1)
    with pytest.raises(ValueError):
        mix_models_into_scene(scene, models, rng, floor_z=FLOOR_Z, scene_extras={"x": np.zeros(3)})
    with pytest.raises(ValueError):
        mix_models_into_scene(scene, models, rng, floor_z=FLOOR_Z, scene_extras={"label": np.zeros(len(scene))})


def test_mixing_is_deterministic_for_a_fixed_seed():
    rng = np.random.default_rng(15)
    scene, models = room_scan(rng), models_list(rng)
    first = mix_models_into_scene(scene, models, np.random.default_rng(16))
    second = mix_models_into_scene(scene, models, np.random.default_rng(16))
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_models_follow_a_sloped_floor_locally():
    rng = np.random.default_rng(17)
    scene = room_scan(rng, floor_z=0.0, size=(6.0, 6.0))
    scene[:, 2] += 0.01 * scene[:, 0]  # floor rises 6 cm across the room
    models = [(model(rng, size=(0.4, 0.4, 0.5)), 3)]
    for seed in range(5):
        out = mix_models_into_scene(scene, models, np.random.default_rng(seed),
                                    MixConfig(overlap="keep", floor_tolerance=0.1), floor_z=0.03)
        placed = out["coord"][out["is_synthetic"]]
        expected_floor = 0.01 * placed[:, 0].mean()
        assert placed[:, 2].min() == pytest.approx(expected_floor, abs=0.01)


def test_mix_config_rejects_unknown_overlap_mode():
    with pytest.raises(ValueError):
        MixConfig(overlap="sometimes")


def test_place_models_alone_lays_models_apart_on_the_ground():
    rng = np.random.default_rng(18)
    models = models_list(rng, 4)
    out = place_models_alone(models, np.random.default_rng(19), spacing=0.5)
    assert set(out) == {"coord", "label", "is_synthetic", "model_id", "scene_index", "overlap_filtered"}
    assert out["is_synthetic"].all() and len(out["scene_index"]) == 0
    assert out["overlap_filtered"] is False
    boxes = []
    for model_id, (points, label) in enumerate(models):
        mask = out["model_id"] == model_id
        placed = out["coord"][mask]
        assert np.all(out["label"][mask] == label)
        np.testing.assert_allclose(placed[:, 2], points[:, 2], atol=1e-6)  # z = 0 is the ground
        boxes.append((placed[:, 0].min(), placed[:, 0].max()))
    boxes.sort()
    for (_, right), (left, _) in zip(boxes, boxes[1:]):
        assert left - right == pytest.approx(0.5, abs=1e-5)
    # The row is centred on the origin.
    assert boxes[0][0] == pytest.approx(-boxes[-1][1], abs=1e-5)


def test_place_models_alone_is_deterministic_and_handles_no_models():
    rng = np.random.default_rng(20)
    models = models_list(rng, 3)
    first = place_models_alone(models, np.random.default_rng(21))
    second = place_models_alone(models, np.random.default_rng(21))
    np.testing.assert_array_equal(first["coord"], second["coord"])
    empty = place_models_alone([], rng)
    assert empty["coord"].shape == (0, 3) and empty["label"].shape == (0,)


def test_random_placement_is_unchanged_by_the_layout_options():
    # Expectation recorded with the code before placement/region existed (same seeds).
    import hashlib

    rng = np.random.default_rng(123)
    scene, models = room_scan(rng), models_list(rng, 5)
    expected = {"filter": ("29037e20f8a6f00b", 36429), "keep": ("4bbeb01b9b43462c", 37500),
                "random": ("29037e20f8a6f00b", 36429)}
    for overlap, (digest, rows) in expected.items():
        cfg = MixConfig(overlap=overlap, placement="random", region="overlap")
        out = mix_models_into_scene(scene, models, np.random.default_rng(7), cfg, floor_z=FLOOR_Z,
                                    model_classes=[f"class{i}" for i in range(5)])
        sha = hashlib.sha256()
        sha.update(np.round(out["coord"].astype(np.float64), 4).tobytes())
        sha.update(out["scene_index"].tobytes())
        sha.update(out["label"].tobytes())
        assert out["coord"].shape == (rows, 3) and sha.hexdigest()[:16] == digest
        assert "placement" not in out
        default = mix_models_into_scene(scene, models, np.random.default_rng(7), MixConfig(overlap=overlap),
                                        floor_z=FLOOR_Z)
        for key in default:
            np.testing.assert_array_equal(out[key], default[key])


def test_replace_erases_exactly_the_scene_points_in_each_footprint_volume():
    rng = np.random.default_rng(21)
    scene = room_scan(rng)
    # A few scene points stacked above the floor so the volume's top bound matters.
    column = np.column_stack([rng.uniform(0, 6, 3000), rng.uniform(0, 5, 3000), rng.uniform(FLOOR_Z, 2.0, 3000)])
    scene = np.concatenate([scene, column.astype(np.float32)])
    def boxed(size):  # random points plus the box's corners: its xy hull is the rectangle
        corners = np.array([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (0.0, 1.0)])
        corners[:, :2] = corners[:, :2] * np.asarray(size[:2])
        corners[:, 2] *= size[2]
        return np.concatenate([model(rng, size=size), corners])

    models = [(boxed((0.8, 0.5, 0.6)), 1), (boxed((0.4, 0.4, 1.0)), 2)]
    margin = 0.05
    cfg = MixConfig(overlap="keep", region="replace", region_margin=margin)
    out = mix_models_into_scene(scene, models, np.random.default_rng(22), cfg, floor_z=FLOOR_Z)
    erased = np.zeros(len(scene), dtype=bool)
    for model_id in range(len(models)):
        box = out["coord"][out["model_id"] == model_id]  # axis-aligned boxes: hull + mitred margin = box + margin
        low, high = box.min(axis=0) - margin, box.max(axis=0) + margin
        erased |= np.all((scene >= low) & (scene <= high), axis=1)
    assert erased.sum() > 100  # floor under the models and column points
    np.testing.assert_array_equal(out["scene_index"], np.flatnonzero(~erased))
    np.testing.assert_array_equal(out["coord"][~out["is_synthetic"]], scene[~erased])
    # Replace then filter: the filter can only remove more (here nothing: the margin covers it).
    filtered = mix_models_into_scene(scene, models, np.random.default_rng(22),
                                     MixConfig(overlap="filter", region="replace"), floor_z=FLOOR_Z)
    assert set(filtered["scene_index"]) <= set(out["scene_index"])


@pytest.mark.parametrize("kwargs", [
    {"placement": "smart"}, {"region": "erase"}, {"region_margin": -0.1}, {"layout_cell": 0.0},
    {"layout_overlap": 1.5}, {"layout_tries": 0}, {"placement": "layout", "layout_rules": "no_such_rules"},
])
def test_mix_config_rejects_bad_layout_options(kwargs):
    with pytest.raises((ValueError, Exception), match="|".join(kwargs) + "|layout rules"):
        MixConfig(**kwargs)
