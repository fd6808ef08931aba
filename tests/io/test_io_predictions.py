import numpy as np
import pytest

from cad2scan.errors import Cad2ScanError
from cad2scan.io.ply import read_ply_points
from cad2scan.io.predictions import (
    BACKGROUND_COLOR,
    class_colors,
    write_prediction_npz,
    write_prediction_ply,
    write_predictions,
)

NAMES = ["chair", "table", "sofa", "background"]


def _scan(n=50, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    coord = rng.uniform(-2, 2, (n, 3)).astype(np.float32)
    logits = rng.normal(size=(n, num_classes))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return coord, probabilities


def test_class_colors_are_distinct_with_grey_background():
    colors = class_colors(12)
    assert colors.shape == (12, 3) and colors.dtype == np.uint8
    assert (colors[-1] == BACKGROUND_COLOR).all()
    assert colors[-1][0] == colors[-1][1] == colors[-1][2]  # grey
    assert len({tuple(c) for c in colors}) == 12
    # no target is drawn in a grey that could be mistaken for background
    assert not any(c[0] == c[1] == c[2] for c in colors[:-1])


def test_class_colors_are_stable_prefixes():
    assert (class_colors(5)[:4] == class_colors(12)[:4]).all()
    assert (class_colors(1) == BACKGROUND_COLOR).all()
    with pytest.raises(ValueError):
        class_colors(0)


def test_npz_holds_probabilities_classes_and_argmax_labels(tmp_path):
    coord, probabilities = _scan()
    path = tmp_path / "scan.pred.npz"
    write_predictions(path, coord, probabilities, NAMES)
    with np.load(path) as data:  # allow_pickle=False by default: no object arrays
        assert sorted(data.files) == ["classes", "labels", "probabilities"]
        assert data["probabilities"].dtype == np.float32
        assert data["probabilities"].shape == (50, 4)
        np.testing.assert_allclose(data["probabilities"], probabilities, rtol=1e-6)
        assert data["classes"].tolist() == NAMES
        assert data["labels"].dtype == np.int64
        assert data["labels"].tolist() == probabilities.argmax(axis=1).tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["scan.pred.npz"]  # atomic: no temp file


def test_npz_argmax_known_answer(tmp_path):
    probabilities = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.6], [0.2, 0.5, 0.2, 0.1]])
    write_prediction_npz(tmp_path / "p.npz", probabilities, NAMES)
    with np.load(tmp_path / "p.npz") as data:
        assert data["labels"].tolist() == [0, 3, 1]


def test_ply_is_readable_and_coloured_by_class(tmp_path):
    coord, probabilities = _scan(n=80, num_classes=4, seed=1)
    path = tmp_path / "scan.pred.ply"
    write_predictions(path, coord, probabilities, NAMES)
    scan = read_ply_points(path)
    labels = probabilities.argmax(axis=1)
    np.testing.assert_array_equal(scan["coord"], coord)
    assert scan["label"].tolist() == labels.tolist()
    assert (scan["color"] == class_colors(4)[labels]).all()
    background = labels == 3
    assert background.any() and (~background).any()
    assert (scan["color"][background] == BACKGROUND_COLOR).all()


def test_ply_with_many_classes_keeps_labels_above_255(tmp_path):
    coord = np.zeros((3, 3), np.float32)
    labels = np.array([0, 299, 150])
    write_prediction_ply(tmp_path / "many.ply", coord, labels, 300)
    scan = read_ply_points(tmp_path / "many.ply")
    assert scan["label"].tolist() == [0, 299, 150]
    assert (scan["color"][1] == BACKGROUND_COLOR).all()


def test_ply_rejects_labels_outside_the_classes(tmp_path):
    with pytest.raises(ValueError, match="0..3"):
        write_prediction_ply(tmp_path / "bad.ply", np.zeros((2, 3)), np.array([0, 4]), 4)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["scan.pred.txt", "scan.pred", "scan.PLY.gz"])
def test_unknown_extension_raises_and_writes_nothing(tmp_path, name):
    coord, probabilities = _scan()
    with pytest.raises(Cad2ScanError, match=r"\.npz or \.ply"):
        write_predictions(tmp_path / name, coord, probabilities, NAMES)
    assert not list(tmp_path.iterdir())


def test_extension_is_case_insensitive(tmp_path):
    coord, probabilities = _scan()
    write_predictions(tmp_path / "SCAN.PLY", coord, probabilities, NAMES)
    assert read_ply_points(tmp_path / "SCAN.PLY")["coord"].shape == (50, 3)


def test_probabilities_that_do_not_match_the_classes_raise(tmp_path):
    coord, probabilities = _scan(num_classes=3)
    with pytest.raises(ValueError, match="4"):
        write_predictions(tmp_path / "p.npz", coord, probabilities, NAMES)
    with pytest.raises(ValueError, match="points"):
        write_predictions(tmp_path / "p.ply", coord[:10], _scan()[1], NAMES)
    assert not list(tmp_path.iterdir())
