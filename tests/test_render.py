"""The point rasteriser, the PNG writer, and ``cad2scan render`` (Fig. 4 / Fig. 3B figures)."""

import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cad2scan.classes import load_category_set  # noqa: E402
from cad2scan.cli import main  # noqa: E402
from cad2scan.config import load_config  # noqa: E402
from cad2scan.errors import Cad2ScanError, ConfigError, DataFormatError  # noqa: E402
from cad2scan.figures import (OTHER_COLOR, load_render_scan, most_used_prototypes, network_outputs,  # noqa: E402
                              point_coefficients, render_scan)
from cad2scan.io.ply import write_ply  # noqa: E402
from cad2scan.io.predictions import class_colors  # noqa: E402
from cad2scan.model.net import RTLNet  # noqa: E402
from cad2scan.predict import predict_probabilities  # noqa: E402
from cad2scan.render import (Camera, encode_png, look_rotation, oblique_camera, project, rasterize,  # noqa: E402
                             rasterize_indices, top_down_camera, write_png)
from cad2scan.train.checkpoint import save_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["model.backbone.width_scale=0.25", "model.backbone.out_channels=16", "model.hull.num_prototypes=8",
        "name=tiny"]
SIZE = {"width": 160, "height": 120}


def _down_camera(width=100, height=80, focal=10.0):
    """Looking straight down from z = 10: image right = +x, image up = +y, 10 px per metre."""
    return Camera(look_rotation((0, 0, -1), up=(0, 1, 0)), np.array([0.0, 0.0, 10.0]), focal, (50.0, 40.0),
                  width, height, "orthographic")


def _decode(path_or_bytes):
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return mpimg.imread(source, format="png")


# ------------------------------------------------------------------------ rasteriser
def test_a_single_point_lands_on_the_expected_pixel():
    index, depth = rasterize_indices(np.array([[1.25, 2.0, 0.0]]), _down_camera(), point_size=1)
    assert index.shape == (80, 100) and index.dtype == np.int64
    # column floor(50 + 10 * 1.25) = 62; row floor(40 - 10 * 2.0) = 20 (+y is up in the image)
    assert np.argwhere(index >= 0).tolist() == [[20, 62]]
    assert index[20, 62] == 0 and depth[20, 62] == pytest.approx(10.0)
    assert np.isinf(depth[index < 0]).all()


def test_point_size_draws_a_square_of_that_many_pixels_around_the_point():
    index, _ = rasterize_indices(np.array([[0.0, 0.0, 0.0]]), _down_camera(), point_size=3)
    assert np.argwhere(index == 0).tolist() == [[r, c] for r in (39, 40, 41) for c in (49, 50, 51)]
    index, _ = rasterize_indices(np.array([[0.0, 0.0, 0.0]]), _down_camera(), point_size=2)
    assert np.count_nonzero(index == 0) == 4


def test_the_nearer_point_wins_the_z_buffer_whatever_the_order():
    far_then_near = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # z up: the second is nearer the camera
    index, depth = rasterize_indices(far_then_near, _down_camera())
    assert index[40, 50] == 1 and depth[40, 50] == pytest.approx(9.0)
    index, _ = rasterize_indices(far_then_near[::-1], _down_camera())
    assert index[40, 50] == 0


def test_equal_depths_go_to_the_lower_point_index():
    same = np.array([[0.0, 0.0, 0.5], [0.01, 0.01, 0.5]])
    assert rasterize_indices(same, _down_camera())[0][40, 50] == 0


def test_perspective_projects_the_optical_axis_to_the_centre_and_drops_points_behind():
    camera = Camera(look_rotation((1, 0, 0)), np.zeros(3), 100.0, (32.0, 24.0), 64, 48, "perspective")
    u, v, depth = project(np.array([[5.0, 0.0, 0.0], [5.0, -1.0, 0.5], [-1.0, 0.0, 0.0]]), camera)
    assert (u[0], v[0], depth[0]) == (32.0, 24.0, 5.0)
    # right of a camera looking along +x is -y; up is +z (rows go down)
    assert u[1] == pytest.approx(32 + 100 * 1 / 5) and v[1] == pytest.approx(24 - 100 * 0.5 / 5)
    assert np.isnan(u[2]) and np.isnan(depth[2])
    index, _ = rasterize_indices(np.array([[-1.0, 0.0, 0.0]]), camera)
    assert (index < 0).all()


def test_rasterize_returns_an_rgb_uint8_image_with_the_point_colours_on_white():
    colors = np.array([[230, 25, 75], [0, 130, 200]], dtype=np.uint8)
    image = rasterize(np.array([[1.0, 1.0, 0.0], [-2.0, -1.0, 0.0]]), colors, _down_camera(), point_size=2)
    assert image.shape == (80, 100, 3) and image.dtype == np.uint8
    assert image[30, 60].tolist() == [230, 25, 75] and image[50, 30].tolist() == [0, 130, 200]
    assert np.count_nonzero((image != 255).any(axis=2)) == 8


def test_fitted_cameras_keep_every_point_inside_the_image_and_render_deterministically():
    rng = np.random.default_rng(0)
    points = rng.uniform([0, 0, 0], [7, 4, 2.5], (20000, 3))
    for camera in (top_down_camera(points, 200, 150), oblique_camera(points, 200, 150)):
        u, v, depth = project(points, camera)
        assert np.isfinite(depth).all() and (depth > 0).all()
        assert u.min() >= 0 and u.max() < 200 and v.min() >= 0 and v.max() < 150
        # the scan fills the image along one axis (margins of 4 %)
        assert max(np.ptp(u) / 200, np.ptp(v) / 150) > 0.85
        first, _ = rasterize_indices(points, camera, 2)
        again, _ = rasterize_indices(points, camera, 2)
        np.testing.assert_array_equal(first, again)


# ------------------------------------------------------------------------------- PNG
def test_png_writer_output_decodes_to_the_same_pixels(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    decoded = _decode(encode_png(image))
    assert decoded.shape == (37, 53, 3)
    np.testing.assert_array_equal(np.round(decoded * 255).astype(np.uint8), image)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    write_png(tmp_path / "grey.png", grey)
    np.testing.assert_array_equal(np.round(_decode(tmp_path / "grey.png") * 255).astype(np.uint8), grey)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(image.astype(np.float32))


# -------------------------------------------------------------------------- figures
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two tiny random checkpoints of the demo preset (scannet11 classes): with and without the hull."""
    folder = tmp_path_factory.mktemp("render_models")
    paths = {}
    for hull in (True, False):
        cfg = load_config("demo", TINY + [f"model.use_hull={str(hull).lower()}"])
        names = load_category_set(cfg.data.categories).names
        torch.manual_seed(0)
        net = RTLNet(cfg.model, len(names), names).eval()
        paths[hull] = folder / f"model_hull_{hull}.safetensors"
        save_checkpoint(paths[hull], net, cfg, names)
    return paths


@pytest.fixture(scope="module")
def labelled_scene(tmp_path_factory):
    """A floor with a 'chair' box and a 'table' box, labelled with NYU40 ids, as a scene .npz."""
    categories = load_category_set("scannet11")
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(0, 4, (3000, 2)), rng.normal(0, 0.01, 3000)]
    chair = rng.uniform([1, 1, 0], [1.5, 1.5, 0.9], (800, 3))
    table = rng.uniform([2.5, 2, 0], [3.5, 3, 0.75], (800, 3))
    coord = np.concatenate([floor, chair, table]).astype(np.float32)
    chair_id = categories.classes[categories.index_of("chair")].scene[0]
    table_id = categories.classes[categories.index_of("table")].scene[0]
    label = np.concatenate([np.full(3000, 2), np.full(800, chair_id), np.full(800, table_id)]).astype(np.int64)
    path = tmp_path_factory.mktemp("render_scene") / "room.npz"
    np.savez(path, coord=coord, label=label, floor_z=0.0)
    return path, coord, categories.map_scene_labels(label)


def test_network_outputs_match_predict_and_coefficients_are_convex(tiny_models, labelled_scene):
    from cad2scan.train.checkpoint import load_checkpoint

    _, coord, _ = labelled_scene
    loaded = load_checkpoint(tiny_models[True])
    outputs = network_outputs(loaded.net, coord, 0.05)
    np.testing.assert_allclose(outputs.point_probabilities(), predict_probabilities(loaded.net, coord, 0.05),
                               atol=1e-6)
    every = point_coefficients(loaded.net, coord, 0.05)
    assert every.shape == (len(coord), 8) and every.dtype == np.float32
    np.testing.assert_allclose(every.sum(axis=1), 1.0, atol=1e-5)
    chosen = point_coefficients(loaded.net, coord, 0.05, prototypes=[5, 2])
    np.testing.assert_array_equal(chosen, every[:, [5, 2]])
    with pytest.raises(ConfigError, match="K=8"):
        point_coefficients(loaded.net, coord, 0.05, prototypes=[8])


def test_point_coefficients_of_a_network_without_hull_is_a_clear_error(tiny_models, labelled_scene):
    from cad2scan.train.checkpoint import load_checkpoint

    net = load_checkpoint(tiny_models[False]).net
    with pytest.raises(Cad2ScanError, match="no convex-hull module"):
        point_coefficients(net, labelled_scene[1], 0.05)


def test_most_used_prototypes_rank_by_argmax_count_then_index():
    coefficients = np.array([[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.0, 0.1, 0.9], [0.9, 0.1, 0.0]])
    assert most_used_prototypes(coefficients, 3) == [1, 0, 2]
    assert most_used_prototypes(coefficients, 2, weights=np.array([1, 1, 5, 1])) == [2, 1]


def test_render_writes_ground_truth_vs_prediction_and_prototype_maps(tiny_models, labelled_scene, tmp_path):
    path, _, truth = labelled_scene
    manifest = render_scan(tiny_models[True], path, tmp_path, prototypes=[3, 1], **SIZE)
    assert manifest["ground_truth"] is True and manifest["classes"] == ["chair", "table"]
    assert manifest["files"] == ["classes.png", "class_chair.png", "class_table.png",
                                 "prototype_003.png", "prototype_001.png"]
    assert json.loads((tmp_path / "render.json").read_text()) == manifest
    colors = class_colors(12)
    for name in manifest["files"]:
        image = _decode(tmp_path / name)
        assert image.ndim == 3 and image.shape[0] > SIZE["height"] and image.shape[1] >= 2 * SIZE["width"] * 0.9
    pixels = np.round(_decode(tmp_path / "class_chair.png")[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    present = {tuple(p) for p in np.unique(pixels, axis=0)}
    assert tuple(colors[3]) in present  # chair (class 3) in its PLY colour (ground-truth panels)
    assert tuple(OTHER_COLOR) in present
    overview = np.round(_decode(tmp_path / "classes.png")[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    overview_colours = {tuple(p) for p in np.unique(overview, axis=0)}
    assert {tuple(colors[3]), tuple(colors[9]), tuple(colors[11])} <= overview_colours  # chair, table, background


def test_render_chooses_the_most_used_prototypes_by_default(tiny_models, labelled_scene, tmp_path):
    from cad2scan.train.checkpoint import load_checkpoint

    path, coord, _ = labelled_scene
    manifest = render_scan(tiny_models[True], path, tmp_path, kinds=("prototypes",), num_prototypes=2, **SIZE)
    every = point_coefficients(load_checkpoint(tiny_models[True]).net, coord, 0.05)
    assert manifest["prototypes"] == most_used_prototypes(every, 2)
    usage = np.bincount(every.argmax(axis=1), minlength=8) / len(coord)
    assert [manifest["prototype_usage"][str(k)] for k in manifest["prototypes"]] == pytest.approx(
        usage[manifest["prototypes"]], abs=1e-6)
    assert manifest["files"] == [f"prototype_{k:03d}.png" for k in manifest["prototypes"]]


def test_render_of_an_unlabelled_scan_file_shows_the_prediction_only(tiny_models, labelled_scene, tmp_path):
    _, coord, _ = labelled_scene
    scan = tmp_path / "scan.ply"
    write_ply(scan, coord)
    assert main(["render", "--checkpoint", str(tiny_models[False]), "--scan", str(scan), "--out",
                 str(tmp_path / "figs"), "--classes", "chair", "--width", "120", "--height", "90",
                 "--device", "cpu"]) == 0
    manifest = json.loads((tmp_path / "figs" / "render.json").read_text())
    assert manifest["ground_truth"] is False and manifest["files"] == ["classes.png", "class_chair.png"]
    image = _decode(tmp_path / "figs" / "class_chair.png")
    assert image.shape[1] < 2 * 120  # one column: the prediction


def test_render_prototypes_without_hull_is_an_error_naming_the_checkpoint(tiny_models, labelled_scene, tmp_path,
                                                                          capsys):
    assert main(["render", "--checkpoint", str(tiny_models[False]), "--scan", str(labelled_scene[0]),
                 "--out", str(tmp_path), "--figures", "prototypes", "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "no convex-hull module" in error and str(tiny_models[False]) in error
    assert not (tmp_path / "render.json").exists()


def test_render_rejects_unknown_classes_and_labels_of_the_wrong_length(tiny_models, labelled_scene, tmp_path):
    path, coord, truth = labelled_scene
    with pytest.raises(ConfigError, match="unknown class"):
        render_scan(tiny_models[False], path, tmp_path, classes=["spaceship"], **SIZE)
    labels = tmp_path / "labels.npy"
    np.save(labels, np.zeros(len(coord) - 1, dtype=np.int64))
    with pytest.raises(DataFormatError, match="labels for a scan of"):
        load_render_scan(path, labels)
    np.save(labels, truth)
    scan = load_render_scan(path, labels)
    np.testing.assert_array_equal(scan.scene_label, truth)


def test_render_takes_class_index_labels_with_labels_as_class(tiny_models, labelled_scene, tmp_path):
    path, coord, truth = labelled_scene
    labels = tmp_path / "classes.txt"
    np.savetxt(labels, truth, fmt="%d")
    manifest = render_scan(tiny_models[False], path, tmp_path / "out", labels=labels, labels_as="class",
                           kinds=("classes",), **SIZE)
    assert manifest["ground_truth"] is True and manifest["classes"] == ["chair", "table"]
    np.savetxt(labels, np.full(len(coord), 12), fmt="%d")
    with pytest.raises(DataFormatError, match="class indices must lie in -1..11"):
        render_scan(tiny_models[False], path, tmp_path / "out", labels=labels, labels_as="class", **SIZE)
