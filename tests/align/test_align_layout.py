"""Layout-aware placement: scene analysis, free space, walls, supports, neighbours, rules."""

import logging

import numpy as np
import pytest

from cad2scan.align.layout import (
    analyse_scene,
    back_direction,
    layout_rules_from_dict,
    load_layout_rules,
)
from cad2scan.align.mixing import MixConfig, mix_models_into_scene
from cad2scan.classes import load_size_priors
from cad2scan.config import load_config
from cad2scan.errors import ConfigError

W, D, H = 6.0, 5.0, 2.5  # room interior [0, W] x [0, D], floor at z = 0
TABLE = (3.5, 5.0, 1.0, 2.0, 0.75)  # x0, x1, y0, y1, top height
CABINET = (0.8, 1.8, 2.5, 3.5, 1.4)  # an obstacle box (top above the support band)


def surface(rng, lo, hi, n):
    """n random points on the faces of the box [lo, hi] except its bottom."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    size = hi - lo
    areas = np.array([size[0] * size[1], size[1] * size[2], size[1] * size[2], size[0] * size[2], size[0] * size[2]])
    face = rng.choice(5, size=n, p=areas / areas.sum())
    points = lo + rng.random((n, 3)) * size
    points[face == 0, 2] = hi[2]
    points[face == 1, 0] = lo[0]
    points[face == 2, 0] = hi[0]
    points[face == 3, 1] = lo[1]
    points[face == 4, 1] = hi[1]
    return points


def room(rng, table=True, cabinet=True, size=(W, D)):
    """A scan of a walled room with a table and a cabinet (metres, z up, floor z = 0)."""
    w, d = size
    parts = [np.column_stack([rng.uniform(0, w, 30000), rng.uniform(0, d, 30000), rng.normal(0, 0.004, 30000)])]
    for axis, value, length in ((0, 0.0, d), (0, w, d), (1, 0.0, w), (1, d, w)):
        n = int(4000 * length)
        wall = np.column_stack([rng.uniform(0, w, n), rng.uniform(0, d, n), rng.uniform(0, H, n)])
        wall[:, axis] = value + rng.normal(0, 0.004, n)
        parts.append(wall)
    if table:
        x0, x1, y0, y1, top = TABLE
        parts.append(np.column_stack([rng.uniform(x0, x1, 6000), rng.uniform(y0, y1, 6000), np.full(6000, top)]))
        for x, y in ((x0 + 0.05, y0 + 0.05), (x1 - 0.05, y0 + 0.05), (x0 + 0.05, y1 - 0.05), (x1 - 0.05, y1 - 0.05)):
            parts.append(np.column_stack([rng.normal(x, 0.02, 300), rng.normal(y, 0.02, 300), rng.uniform(0, top, 300)]))
    if cabinet:
        x0, x1, y0, y1, top = CABINET
        parts.append(surface(rng, (x0, y0, 0.0), (x1, y1, top), 12000))
    return np.concatenate(parts).astype(np.float32)


def box_model(rng, size=(0.6, 0.5, 0.7), n=3000):
    """Model coordinates (xy centre 0, bottom z = 0) of a box's surface."""
    sx, sy, sz = size
    return surface(rng, (-sx / 2, -sy / 2, 0.0), (sx / 2, sy / 2, sz), n)


def backed_model(rng, size=(0.6, 0.5, 0.6), back_height=1.0, n=3000):
    """A box with a tall panel along its -y side (a headboard / backrest / tank)."""
    sx, sy, sz = size
    body = box_model(rng, size, n)
    panel = np.column_stack([rng.uniform(-sx / 2, sx / 2, n // 3), np.full(n // 3, -sy / 2),
                             rng.uniform(0, back_height, n // 3)])
    return np.concatenate([body, panel]), n  # first n points: the body


def rect_overlap(a, b):
    """Area (m^2) shared by two axis-aligned rectangles (x0, x1, y0, y1)."""
    dx = min(a[1], b[1]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[2], b[2])
    return max(dx, 0.0) * max(dy, 0.0)


def xy_rect(points):
    return points[:, 0].min(), points[:, 0].max(), points[:, 1].min(), points[:, 1].max()


LAYOUT = MixConfig(overlap="keep", placement="layout")


def placed(out, model_id):
    return out["coord"][out["model_id"] == model_id].astype(np.float64)


def test_analysis_finds_floor_walls_the_table_top_and_the_cabinet():
    scene = room(np.random.default_rng(0))
    layout = analyse_scene(scene, 0.0)
    centre = lambda x, y: tuple(layout.cell_of(np.array([x, y])))  # noqa: E731
    assert layout.floor[centre(3.0, 4.0)] and not layout.occupied[centre(3.0, 4.0)]
    near_wall = lambda x, y: any(layout.wall[centre(x + dx, y + dy)]  # noqa: E731
                                 for dx in (-0.03, 0, 0.03) for dy in (-0.03, 0, 0.03))
    assert near_wall(0.0, 2.5) and near_wall(3.0, D) and near_wall(W, 1.0)
    assert not layout.wall[centre(3.0, 4.0)]
    x0, x1, y0, y1, top = TABLE
    on_table = layout.support_height[centre((x0 + x1) / 2, (y0 + y1) / 2)]
    assert on_table == pytest.approx(top, abs=0.01)
    support_cells = np.argwhere(layout.support_id >= 0)
    xy = layout.centre_of(support_cells)
    # every support cell is on the table (the cabinet top at 1.4 m is above the band)
    assert np.all((xy[:, 0] > x0 - 0.1) & (xy[:, 0] < x1 + 0.1) & (xy[:, 1] > y0 - 0.1) & (xy[:, 1] < y1 + 0.1))
    assert len(support_cells) * layout.cell ** 2 == pytest.approx((x1 - x0) * (y1 - y0), rel=0.3)
    assert layout.occupied[centre(1.3, 3.0)]


def test_free_placement_never_overlaps_the_furniture_or_other_models():
    scene = room(np.random.default_rng(1))
    rng = np.random.default_rng(2)
    models = [(box_model(rng, (0.4 + 0.2 * i, 0.5, 0.5 + 0.1 * i)), i) for i in range(4)]
    x0, x1, y0, y1, _ = TABLE
    furniture = [(x0, x1, y0, y1), CABINET[:4]]
    for seed in range(12):
        out = mix_models_into_scene(scene, models, np.random.default_rng(seed), LAYOUT, floor_z=0.0)
        assert list(out["placement"]) == ["free"] * 4
        rects = [xy_rect(placed(out, i)) for i in range(4)]
        for rect in rects:
            area = (rect[1] - rect[0]) * (rect[3] - rect[2])
            for other in furniture:  # tolerance 5 % of the footprint + cell rounding
                assert rect_overlap(rect, other) <= 0.1 * area
            assert rect[0] > 0 and rect[1] < W and rect[2] > 0 and rect[3] < D
        for i in range(4):
            for j in range(i + 1, 4):
                smaller = min((r[1] - r[0]) * (r[3] - r[2]) for r in (rects[i], rects[j]))
                assert rect_overlap(rects[i], rects[j]) <= 0.1 * smaller
        for i in range(4):  # standing on the floor, orientation kept (a pure translation)
            shift = placed(out, i) - models[i][0]
            np.testing.assert_allclose(shift, shift[:1].repeat(len(shift), 0), atol=1e-4)
            assert placed(out, i)[:, 2].min() == pytest.approx(0.0, abs=0.01)


def test_against_wall_classes_end_near_a_wall_facing_into_the_room():
    scene = room(np.random.default_rng(3))
    rng = np.random.default_rng(4)
    classes = ["bookshelf", "bed", "toilet"]
    shapes = [backed_model(rng, size, back) for size, back in
              (((1.0, 0.4, 1.4), 1.8), ((1.6, 2.0, 0.5), 0.9), ((0.4, 0.65, 0.45), 0.8))]
    models = [(points, i) for i, (points, _) in enumerate(shapes)]
    gap_high = load_layout_rules().wall_gap[1]
    for seed in range(8):
        out = mix_models_into_scene(scene, models, np.random.default_rng(seed), LAYOUT, floor_z=0.0,
                                    model_classes=classes)
        assert list(out["placement"]) == ["against_wall"] * 3
        for i, (_, body) in enumerate(shapes):
            points = placed(out, i)
            assert points[:, 0].min() > -0.01 and points[:, 0].max() < W + 0.01
            assert points[:, 1].min() > -0.01 and points[:, 1].max() < D + 0.01
            # Tall furniture counts as wall too: the cabinet's sides are walls to stand against.
            x0, x1, y0, y1, _ = CABINET
            cabinet = np.hypot(np.maximum.reduce([x0 - points[:, 0], 0 * points[:, 0], points[:, 0] - x1]),
                               np.maximum.reduce([y0 - points[:, 1], 0 * points[:, 1], points[:, 1] - y1]))
            wall_distance = np.minimum.reduce([points[:, 0], W - points[:, 0], points[:, 1], D - points[:, 1], cabinet])
            panel = wall_distance[body:]
            assert panel.min() <= gap_high + 0.03  # the back is within a few cm of a wall
            assert np.median(panel) <= gap_high + 0.03  # the whole back panel, not a corner
            assert np.median(panel) < np.median(wall_distance[:body])  # facing into the room


def test_on_support_classes_rest_on_the_table_top():
    scene = room(np.random.default_rng(5))
    rng = np.random.default_rng(6)
    models = [(box_model(rng, (0.35, 0.25, 0.03)), 0), (box_model(rng, (0.1, 0.1, 0.12)), 1)]
    x0, x1, y0, y1, top = TABLE
    for seed in range(8):
        out = mix_models_into_scene(scene, models, np.random.default_rng(seed), LAYOUT, floor_z=0.0,
                                    model_classes=["laptop", "cup"])
        assert list(out["placement"]) == ["on_support"] * 2
        for i in range(2):
            points = placed(out, i)
            assert points[:, 2].min() == pytest.approx(top, abs=0.01)
            centre = points[:, :2].mean(axis=0)
            assert x0 < centre[0] < x1 and y0 < centre[1] < y1


def test_chairs_land_near_the_table_facing_it():
    scene = room(np.random.default_rng(7), cabinet=False)
    rng = np.random.default_rng(8)
    chair, body = backed_model(rng, (0.5, 0.5, 0.45), 0.9)
    x0, x1, y0, y1, _ = TABLE
    low, high = load_layout_rules().neighbour_distance
    for seed in range(8):
        out = mix_models_into_scene(scene, [(chair, 0)], np.random.default_rng(seed), LAYOUT, floor_z=0.0,
                                    model_classes=["chair"])
        assert list(out["placement"]) == ["neighbour"]
        points = placed(out, 0)

        def to_table(xy):
            dx = np.maximum.reduce([x0 - xy[..., 0], np.zeros(xy.shape[:-1]), xy[..., 0] - x1])
            dy = np.maximum.reduce([y0 - xy[..., 1], np.zeros(xy.shape[:-1]), xy[..., 1] - y1])
            return np.hypot(dx, dy)

        centre = (points[:, :2].min(axis=0) + points[:, :2].max(axis=0)) / 2
        assert low - 0.1 <= to_table(centre) <= high + 0.1
        assert np.median(to_table(points[body:, :2])) > np.median(to_table(points[:body, :2]))  # back turned away
        assert xy_rect(points)[0] > 0 and xy_rect(points)[1] < W


def test_a_chair_goes_near_a_table_model_placed_before_it():
    scene = room(np.random.default_rng(9), table=False, cabinet=False)
    rng = np.random.default_rng(10)
    chair, _ = backed_model(rng, (0.5, 0.5, 0.45), 0.9)
    table = box_model(rng, (1.2, 0.8, 0.72))
    low, high = load_layout_rules().neighbour_distance
    for seed in range(5):
        # The chair comes first in the list; tables are placed before their neighbours.
        out = mix_models_into_scene(scene, [(chair, 0), (table, 1)], np.random.default_rng(seed), LAYOUT,
                                    floor_z=0.0, model_classes=["chair", "table"])
        assert list(out["placement"]) == ["neighbour", "free"]
        tx0, tx1, ty0, ty1 = xy_rect(placed(out, 1))
        points = placed(out, 0)
        cx, cy = (points[:, :2].min(axis=0) + points[:, :2].max(axis=0)) / 2
        gap = np.hypot(max(tx0 - cx, 0, cx - tx1), max(ty0 - cy, 0, cy - ty1))
        assert low - 0.1 <= gap <= high + 0.1


def test_layout_without_class_names_uses_free_space_only():
    scene = room(np.random.default_rng(11))
    rng = np.random.default_rng(12)
    models = [(backed_model(rng)[0], 0), (box_model(rng, (0.1, 0.1, 0.1)), 1)]
    out = mix_models_into_scene(scene, models, np.random.default_rng(13), LAYOUT, floor_z=0.0)
    assert list(out["placement"]) == ["free", "free"]
    assert placed(out, 1)[:, 2].min() == pytest.approx(0.0, abs=0.01)


def test_layout_falls_back_to_the_random_recipe_when_nothing_fits(caplog):
    scene = room(np.random.default_rng(14), table=False, cabinet=False, size=(1.0, 1.0))
    big = box_model(np.random.default_rng(15), (2.0, 2.0, 0.5))
    cfg = MixConfig(overlap="keep", placement="layout", layout_tries=5)
    with caplog.at_level(logging.DEBUG, logger="cad2scan.align"):
        out = mix_models_into_scene(scene, [(big, 3)], np.random.default_rng(16), cfg, floor_z=0.0,
                                    model_classes=["bed"])
    assert list(out["placement"]) == ["random"]
    assert placed(out, 0)[:, 2].min() == pytest.approx(0.0, abs=0.01)
    assert any("random" in record.message for record in caplog.records)


def test_layout_placement_is_deterministic_for_a_seed():
    scene = room(np.random.default_rng(17))
    rng = np.random.default_rng(18)
    models = [(backed_model(rng)[0], 0), (box_model(rng), 1), (box_model(rng, (0.2, 0.2, 0.2)), 2)]
    classes = ["bed", "chair", "laptop"]
    first = mix_models_into_scene(scene, models, np.random.default_rng(19), LAYOUT, floor_z=0.0, model_classes=classes)
    second = mix_models_into_scene(scene, models, np.random.default_rng(19), LAYOUT, floor_z=0.0, model_classes=classes)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_model_classes_must_match_the_models():
    scene = room(np.random.default_rng(20))
    with pytest.raises(ValueError, match="model_classes"):
        mix_models_into_scene(scene, [(box_model(np.random.default_rng(0)), 0)], np.random.default_rng(0), LAYOUT,
                              floor_z=0.0, model_classes=["bed", "chair"])


def test_back_direction_points_to_the_tallest_side_else_a_long_side():
    rng = np.random.default_rng(21)
    points, _ = backed_model(rng, (0.8, 0.5, 0.4), 1.0)
    np.testing.assert_allclose(back_direction(points), [0.0, -1.0], atol=0.1)
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    np.testing.assert_allclose(back_direction(points @ rotation.T), rotation[:2, :2] @ [0.0, -1.0], atol=0.1)
    flat = box_model(rng, (1.2, 0.4, 0.5))  # no taller side: a long side (normal along y)
    assert abs(back_direction(flat)[1]) == pytest.approx(1.0, abs=0.05)


def test_default_rules_cover_the_demo_classes_and_name_known_classes():
    rules = load_layout_rules()
    assert {"bookshelf", "bed", "toilet"} <= rules.against_wall
    assert "laptop" in rules.on_support
    assert set(rules.neighbours["chair"]) == {"table", "desk"}
    assert rules.rule_of("chair") == "neighbour" and rules.rule_of("plant") == "free" and rules.rule_of(None) == "free"
    known = set(load_size_priors().sizes)
    named = rules.against_wall | rules.on_support | set(rules.neighbours)
    named |= {name for near in rules.neighbours.values() for name in near}
    assert named <= known, sorted(named - known)


@pytest.mark.parametrize("raw, message", [
    ({"against_wall": ["bed"], "surprise": 1}, "unknown key"),
    ({"against_wall": ["bed"], "on_support": ["bed"]}, "in both"),
    ({"wall_gap": [0.2, 0.1]}, "wall_gap"),
    ({"neighbours": {"chair": []}}, "neighbours.chair"),
    ({"on_support": "laptop"}, "on_support"),
])
def test_bad_rules_are_rejected_with_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        layout_rules_from_dict(raw, "rules.yaml")


def test_layout_presets_load_and_switch_placement():
    cfg = load_config("ablations/layout")
    assert cfg.name == "layout" and cfg.align.mix.placement == "layout" and cfg.align.mix.region == "overlap"
    cfg = load_config("ablations/layout_replace")
    assert cfg.align.mix.placement == "layout" and cfg.align.mix.region == "replace"
    assert load_config("scannet").align.mix.placement == "random"
    with pytest.raises(ConfigError, match="placement"):
        load_config("ablations/layout", ["align.mix.placement=smart"])
    with pytest.raises(ConfigError, match="layout rules"):
        load_config("ablations/layout", ["align.mix.layout_rules=no_such_rules"])
