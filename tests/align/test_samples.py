"""Training samples: the paper's PDA recipe and the single-model baseline."""

import numpy as np
import pytest

from cad2scan.align.mixing import MixConfig
from cad2scan.align.samples import SampleBuilder
from cad2scan.align.transforms import ModelAugmentConfig, scale_to_size_prior
from cad2scan.classes import load_category_set, load_size_priors
from cad2scan.errors import UnknownClassError


def _box_points(rng, n=600):
    """Points on a unit box surface, normalised like the model cache (bottom at z=0)."""
    points = rng.uniform(-0.5, 0.5, size=(n, 3))
    axis = rng.integers(0, 3, n)
    points[np.arange(n), axis] = np.sign(points[np.arange(n), axis]) * 0.5
    points[:, 2] += 0.5
    return points.astype(np.float32)


@pytest.fixture()
def bank():
    rng = np.random.default_rng(0)
    categories = load_category_set("scannet11")
    names = [c.cad[0] for c in categories.classes] + ["lamp", "plant"]
    return {name: [_box_points(rng), _box_points(rng)] for name in names}


def _scene(rng):
    floor = np.c_[rng.uniform(0, 6, (4000, 2)), np.zeros(4000)]
    wall = np.c_[rng.uniform(0, 6, 1500), np.zeros(1500), rng.uniform(0, 2.5, 1500)]
    return {"coord": np.concatenate([floor, wall]).astype(np.float32), "floor_z": 0.0}


def _builder(bank, mode, augment=None, **kw):
    return SampleBuilder(bank, load_category_set("scannet11"), load_size_priors(), mode,
                         augment or ModelAugmentConfig(), MixConfig(), **kw)


def test_pda_sample_mixes_every_target_and_one_negative_into_the_scene(bank):
    rng = np.random.default_rng(1)
    scene = _scene(rng)
    # no crop: a crop may remove a model's feet (it acts like an occlusion) and the rest stays put
    segments = _builder(bank, "pda", augment=ModelAugmentConfig(crop=False)).build(scene, rng)
    assert len(segments) == 1
    seg = segments[0]
    synthetic_labels = seg["label"][seg["is_synthetic"]]
    assert set(np.unique(synthetic_labels)) == set(range(12))  # 11 targets + background (negative)
    assert np.all(seg["label"][~seg["is_synthetic"]] == -1)
    assert len(np.unique(seg["model_id"][seg["is_synthetic"]])) == 12
    # models stand on the floor: the lowest point of each model is near z = 0
    for model_id in range(12):
        z = seg["coord"][seg["model_id"] == model_id, 2]
        assert abs(z.min()) < 0.06


def test_pda_models_have_their_real_world_size(bank):
    rng = np.random.default_rng(2)
    seg = _builder(bank, "pda").build(_scene(rng), rng)[0]
    priors = load_size_priors()
    categories = load_category_set("scannet11")
    for index, target in enumerate(categories.classes):
        z = seg["coord"][(seg["model_id"] == index), 2]
        expected = priors.size_of(target.cad[0])[2]
        assert 0.85 * expected <= z.max() - z.min() <= 1.12 * expected  # scale 0.9-1.1, crop only lowers


def test_single_recipe_gives_one_untransformed_segment_per_model(bank):
    rng = np.random.default_rng(3)
    segments = _builder(bank, "single").build(None, rng)
    assert len(segments) == 12
    priors = load_size_priors()
    for index, seg in enumerate(segments[:11]):
        assert seg["is_synthetic"].all() and np.all(seg["label"] == index)
        height = seg["coord"][:, 2].max() - seg["coord"][:, 2].min()
        name = load_category_set("scannet11").classes[index].cad[0]
        assert height == pytest.approx(priors.size_of(name)[2], rel=1e-4)
    assert np.all(segments[-1]["label"] == 11)


def test_builder_is_deterministic_for_a_seed(bank):
    scene = _scene(np.random.default_rng(4))
    a = _builder(bank, "pda").build(scene, np.random.default_rng(9))[0]
    b = _builder(bank, "pda").build(scene, np.random.default_rng(9))[0]
    np.testing.assert_array_equal(a["coord"], b["coord"])
    np.testing.assert_array_equal(a["label"], b["label"])


def test_missing_target_class_in_the_bank_is_named(bank):
    del bank["toilet"]
    with pytest.raises(UnknownClassError, match="toilet"):
        _builder(bank, "pda")


def test_no_negative_class_available_is_an_error(bank):
    del bank["lamp"], bank["plant"]
    with pytest.raises(UnknownClassError, match="negative"):
        _builder(bank, "pda")
    _builder(bank, "pda", negatives_per_sample=0)  # allowed without negatives


def test_scene_crop_keeps_only_a_window_of_the_scan_and_models_land_inside_it(bank):
    from cad2scan.align.samples import crop_scene

    rng = np.random.default_rng(5)
    scene = _scene(rng)
    cropped = crop_scene(scene, 2.0, np.random.default_rng(6))
    extent = np.ptp(cropped["coord"][:, :2], axis=0)
    assert np.all(extent <= 2.0 + 1e-6) and 0 < len(cropped["coord"]) < len(scene["coord"])
    assert crop_scene(scene, 50.0, rng) is scene  # a window larger than the scan keeps it whole
    builder = _builder(bank, "pda", scene_crop=3.0)
    seg = builder.build(scene, np.random.default_rng(7))[0]
    scene_xy = seg["coord"][~seg["is_synthetic"], :2]
    assert np.all(np.ptp(scene_xy, axis=0) <= 3.0 + 1e-6)


def test_nega_scene_puts_scene_points_in_the_loss_as_background_and_draws_no_negative_models(bank):
    rng = np.random.default_rng(11)
    builder = _builder(bank, "pda", negatives="scene")
    seg = builder.build(_scene(rng), rng)[0]
    background = load_category_set("scannet11").background_index
    scene = ~seg["is_synthetic"]
    assert scene.sum() > 1000
    assert np.all(seg["label"][scene] == background)
    assert seg["loss_mask"].dtype == bool and seg["loss_mask"].all()  # scene and model points enter the loss
    # only the 11 target models, none of them background
    assert len(np.unique(seg["model_id"][seg["is_synthetic"]])) == 11
    assert set(np.unique(seg["label"][seg["is_synthetic"]])) == set(range(11))
    assert len(builder.draw_models(rng)) == 11


def test_nega_scene_needs_no_negative_classes_and_only_works_with_a_scene(bank):
    from cad2scan.errors import ConfigError

    del bank["lamp"], bank["plant"]
    _builder(bank, "pda", negatives="scene")  # no negative CAD class needed
    with pytest.raises(ConfigError, match="align.negatives"):
        _builder(bank, "models_only", negatives="scene")
    with pytest.raises(ConfigError, match="align.negatives"):
        _builder(bank, "pda", negatives="walls")


def test_default_pda_segments_carry_no_loss_mask(bank):
    rng = np.random.default_rng(12)
    seg = _builder(bank, "pda").build(_scene(rng), rng)[0]
    assert "loss_mask" not in seg


def test_models_only_segment_has_no_scene_points_augmented_models_resting_on_the_floor(bank):
    rng = np.random.default_rng(13)
    builder = _builder(bank, "models_only", augment=ModelAugmentConfig(crop=False))
    segments = builder.build(None, rng)
    assert len(segments) == 1
    seg = segments[0]
    assert seg["is_synthetic"].all() and np.all(seg["model_id"] >= 0)
    assert set(np.unique(seg["label"])) == set(range(12))  # 11 targets + a background negative
    priors = load_size_priors()
    categories = load_category_set("scannet11")
    rotated = 0
    for index, target in enumerate(categories.classes):
        points = seg["coord"][seg["model_id"] == index]
        assert abs(points[:, 2].min()) < 1e-5  # stands on z = 0
        plain = scale_to_size_prior(bank[target.cad[0]][0], priors.size_of(target.cad[0]))
        # the same model size-matched but not rotated has a different xy footprint (rotation +
        # scale), while its height differs only by the random 0.9-1.1 scale
        rotated += not np.allclose(np.ptp(points[:, :2], axis=0), np.ptp(plain[:, :2], axis=0), rtol=0.02)
        height_ratio = np.ptp(points[:, 2]) / np.ptp(plain[:, 2])
        assert 0.9 - 1e-4 <= height_ratio <= 1.1 + 1e-4
    assert rotated >= 10
    # the models lie side by side: their xy boxes do not overlap along x
    spans = sorted((seg["coord"][seg["model_id"] == m, 0].min(), seg["coord"][seg["model_id"] == m, 0].max())
                   for m in range(12))
    assert all(left[1] < right[0] for left, right in zip(spans, spans[1:]))


def test_models_only_with_the_default_crop_keeps_every_point_at_or_above_the_floor(bank):
    rng = np.random.default_rng(14)
    seg = _builder(bank, "models_only").build(None, rng)[0]
    assert seg["coord"][:, 2].min() >= -1e-5
    counts = np.bincount(seg["model_id"], minlength=12)
    assert np.all(counts < 600) and np.all(counts > 0)  # every 600-point model lost one crop cluster


def test_mixer_gets_the_cad_class_of_each_model(bank, monkeypatch):
    import cad2scan.align.samples as samples
    from cad2scan.align.mixing import mix_models_into_scene

    seen = {}

    def new_mixer(scene_points, models, rng, cfg=None, floor_z=None, scene_extras=None, model_classes=None):
        seen["classes"] = model_classes
        return mix_models_into_scene(scene_points, models, rng, cfg, floor_z, scene_extras)

    scene = _scene(np.random.default_rng(15))
    monkeypatch.setattr(samples, "mix_models_into_scene", new_mixer)
    _builder(bank, "pda").build(scene, np.random.default_rng(16))
    assert seen["classes"][:11] == [c.cad[0] for c in load_category_set("scannet11").classes]
    assert seen["classes"][11] in ("lamp", "plant") and len(seen["classes"]) == 12
