"""The viewer page: data packing round trips, embedded classes, no network, subsampling, errors."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from cad2scan.errors import Cad2ScanError, UnknownClassError
from cad2scan.io.predictions import class_colors
from cad2scan.viewer.data import NO_VALUE, ViewScene, pack_scene, subsample_indices, unpack_scene
from cad2scan.viewer.page import ViewDocument, build_html, page_data, page_script, read_page_data, write_view

NAMES = ["chair", "table", "background"]


def make_scene(n=5000, seed=0, name="room"):
    rng = np.random.default_rng(seed)
    coord = rng.uniform([-1.0, 2.0, 0.0], [5.0, 6.5, 2.7], (n, 3)).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(len(NAMES)), n).astype(np.float32)
    truth = rng.integers(-1, len(NAMES), n)
    model_id = np.where(rng.random(n) < 0.3, rng.integers(0, 4, n), -1)
    return ViewScene(name, coord, prediction=probabilities.argmax(1), ground_truth=truth, probabilities=probabilities,
                     model_id=model_id, model_labels={0: 0, 1: 1, 2: 0, 3: 2}, is_synthetic=model_id >= 0,
                     color=rng.integers(0, 256, (n, 3)).astype(np.uint8))


def test_packed_scene_decodes_to_the_inputs_within_quantisation_error():
    scene = make_scene()
    decoded = unpack_scene(pack_scene(scene, len(NAMES)), len(NAMES))
    extent = scene.coord.max(0) - scene.coord.min(0)
    error = np.abs(decoded["coord"] - scene.coord).max(axis=0)
    assert np.all(error <= extent / 65535 / 2 + 1e-6)  # half a quantisation step per axis
    assert np.abs(decoded["probabilities"] - scene.probabilities).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(decoded["prediction"], scene.prediction)
    np.testing.assert_array_equal(decoded["ground_truth"], scene.ground_truth)
    np.testing.assert_array_equal(decoded["model_id"], scene.model_id)
    np.testing.assert_array_equal(decoded["is_synthetic"], scene.is_synthetic)
    np.testing.assert_array_equal(decoded["color"], scene.color)


def test_flat_scene_and_unlabelled_points_pack_without_division_by_zero():
    coord = np.zeros((4, 3), dtype=np.float32)
    coord[:, 0] = [0, 1, 2, 3]
    packed = pack_scene(ViewScene("flat", coord, ground_truth=np.array([-1, 0, 1, -1])), 2)
    decoded = unpack_scene(packed, 2)
    np.testing.assert_allclose(decoded["coord"], coord, atol=1e-4)
    np.testing.assert_array_equal(decoded["ground_truth"], [-1, 0, 1, -1])
    assert NO_VALUE == 255


def test_page_embeds_class_names_colours_and_both_data_and_script():
    text = build_html(ViewDocument("my scan", NAMES, [make_scene()], class_name="table"))
    data = read_page_data(text)
    assert [c["name"] for c in data["classes"]] == NAMES
    assert [c["color"] for c in data["classes"]] == class_colors(3).tolist()
    assert data["initial"] == {"mode": "prediction", "class_index": 1}
    assert "window.onerror" in page_script(text) and 'id="status"' in text
    decoded = unpack_scene(data["scenes"][0], len(NAMES))
    assert len(decoded["coord"]) == 5000


def test_page_makes_no_network_reference():
    text = build_html(ViewDocument("scan", NAMES, [make_scene()]))
    assert not re.search(r"https?://", text)
    assert not re.search(r"\bfetch\s*\(|XMLHttpRequest|WebSocket|EventSource|importScripts|<link[^>]+stylesheet|src=",
                         text)
    assert "default-src 'none'" in text  # the browser refuses any request anyway


def test_script_cannot_be_closed_by_a_class_name():
    text = build_html(ViewDocument("</script><b>x", ["</script>chair", "background"],
                                   [ViewScene("s", np.ones((3, 3)), prediction=np.zeros(3, int))]))
    assert text.count("</script>") == 2  # the data element and the script element
    assert read_page_data(text)["classes"][0]["name"] == "</script>chair"


def test_subsampling_is_seeded_counted_and_keeps_layers_aligned():
    scene = make_scene(n=5000)
    a = page_data(ViewDocument("s", NAMES, [scene]), max_points=1000, rng=np.random.default_rng(3))
    b = page_data(ViewDocument("s", NAMES, [scene]), max_points=1000, rng=np.random.default_rng(3))
    c = page_data(ViewDocument("s", NAMES, [scene]), max_points=1000, rng=np.random.default_rng(4))
    assert a["scenes"][0]["coord"] == b["scenes"][0]["coord"] != c["scenes"][0]["coord"]
    assert (a["scenes"][0]["count"], a["scenes"][0]["total"]) == (1000, 5000)
    decoded = unpack_scene(a["scenes"][0], len(NAMES))
    rows = subsample_indices(5000, 1000, np.random.default_rng(3))
    assert len(np.unique(rows)) == 1000 and np.all(np.diff(rows) > 0)
    np.testing.assert_allclose(decoded["coord"], scene.coord[rows], atol=1e-3)
    np.testing.assert_array_equal(decoded["prediction"], scene.prediction[rows])
    assert np.abs(decoded["probabilities"] - scene.probabilities[rows]).max() <= 0.5 / 255 + 1e-6


def test_small_scene_is_not_subsampled():
    data = page_data(ViewDocument("s", NAMES, [make_scene(n=300)]), max_points=1000)
    assert data["scenes"][0]["count"] == data["scenes"][0]["total"] == 300


def test_write_view_writes_atomically_and_reports_counts(tmp_path):
    out = tmp_path / "v.html"
    info = write_view(out, ViewDocument("s", NAMES, [make_scene(n=2000)]), max_points=500)
    assert info["scenes"] == [("room", 500, 2000)] and info["bytes"] == out.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["v.html"]  # no temp file left behind


def test_bad_inputs_give_clear_errors():
    with pytest.raises(Cad2ScanError, match="no points"):
        build_html(ViewDocument("s", NAMES, [ViewScene("empty", np.zeros((0, 3)))]))
    with pytest.raises(UnknownClassError, match="sofa.*chair, table, background"):
        build_html(ViewDocument("s", NAMES, [make_scene(n=10)], class_name="sofa"))
    with pytest.raises(Cad2ScanError, match="needs data this view lacks"):
        build_html(ViewDocument("s", NAMES, [ViewScene("x", np.ones((2, 3)))], mode="prediction"))
    with pytest.raises(Cad2ScanError, match="unknown colour mode"):
        build_html(ViewDocument("s", NAMES, [make_scene(n=10)], mode="rainbow"))
    with pytest.raises(Cad2ScanError, match="prediction values"):
        build_html(ViewDocument("s", NAMES, [ViewScene("x", np.ones((2, 3)), prediction=np.array([0, 3]))]))
    with pytest.raises(Cad2ScanError, match="probabilities must be"):
        build_html(ViewDocument("s", NAMES, [ViewScene("x", np.ones((2, 3)), probabilities=np.ones((2, 2)))]))
    with pytest.raises(Cad2ScanError, match="NaN"):
        build_html(ViewDocument("s", NAMES, [ViewScene("x", np.full((2, 3), np.nan))]))
    with pytest.raises(Cad2ScanError, match="no scan"):
        build_html(ViewDocument("s", NAMES, []))


def test_default_mode_falls_back_to_what_the_scene_has():
    assert page_data(ViewDocument("s", NAMES, [ViewScene("x", np.ones((2, 3)))]))["initial"]["mode"] == "height"
    scene = ViewScene("x", np.ones((2, 3)), ground_truth=np.array([0, -1]))
    assert page_data(ViewDocument("s", NAMES, [scene]))["initial"]["mode"] == "ground_truth"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: JavaScript syntax not checked")
def test_inline_script_is_valid_javascript(tmp_path):
    script = tmp_path / "viewer.js"
    script.write_text(page_script(build_html(ViewDocument("s", NAMES, [make_scene(n=10)]))))
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "broken.js"
    broken.write_text(script.read_text() + "\n}(")
    assert subprocess.run(["node", "--check", str(broken)], capture_output=True, timeout=30).returncode != 0
