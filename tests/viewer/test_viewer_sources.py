"""``cad2scan view`` inputs: scan + checkpoint, predictions .npz, labels, ScanNet scenes, run folders."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cad2scan.cli import main
from cad2scan.errors import Cad2ScanError, DataFormatError, EmptyScanError, UnknownClassError
from cad2scan.viewer.data import unpack_scene
from cad2scan.viewer.page import read_page_data
from cad2scan.viewer.sources import is_run_folder, sample_scene, scan_document, view_document

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TINY = ["model.backbone.width_scale=0.25", "model.hull.num_prototypes=8", "data.points_per_model=256",
        "data.max_models_per_class=1", "train.batch_size=2", "train.num_threads=1", "train.device=cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder (config.yaml + an untrained model.safetensors) over a tiny generated demo dataset."""
    from cad2scan.classes import load_category_set
    from cad2scan.config import save_config
    from cad2scan.demo import demo_config
    from cad2scan.model.net import RTLNet
    from cad2scan.synth.generate import generate_demo_dataset
    from cad2scan.synth.scanner import ScannerConfig
    from cad2scan.train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("viewrun")
    generate_demo_dataset(root / "data", models_per_class_train=1, models_per_class_test=1, train_rooms=1,
                          eval_rooms=1, progress=False, scanner=ScannerConfig(max_points=5000))
    cfg = demo_config(root, "pda_fa", TINY)
    names = load_category_set(cfg.data.categories).names
    torch.manual_seed(0)
    net = RTLNet(cfg.model, len(names), names)
    run = root / "run"
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    save_checkpoint(run / "model.safetensors", net, cfg, names)
    return run


@pytest.fixture(scope="module")
def room(run_dir):
    """An evaluation room of the demo data (ScanNet layout, with labels)."""
    scans = sorted((run_dir.parent / "data" / "ScanNet" / "scans").iterdir())
    return scans[-1]


def test_scan_with_checkpoint_shows_prediction_probabilities_and_ground_truth(run_dir, room, tmp_path):
    out = tmp_path / "view.html"
    assert main(["view", str(room / f"{room.name}_vh_clean_2.ply"), "--checkpoint", str(run_dir / "model.safetensors"),
                 "--out", str(out), "--class", "chair", "--device", "cpu", "--quiet"]) == 0
    data = read_page_data(out.read_text(encoding="utf-8"))
    names = [c["name"] for c in data["classes"]]
    assert data["initial"] == {"mode": "prediction", "class_index": names.index("chair")} and names[3] == "chair"
    decoded = unpack_scene(data["scenes"][0], len(data["classes"]))
    assert {"prediction", "ground_truth", "probabilities", "color"} <= set(decoded)
    np.testing.assert_allclose(decoded["probabilities"].sum(axis=1), 1.0, atol=len(data["classes"]) / 255)
    assert (decoded["ground_truth"] >= 0).mean() > 0.5  # labelled room, mapped to the 12 classes


def test_predictions_file_needs_its_scan_and_matches_point_counts(run_dir, room, tmp_path):
    scan = room / f"{room.name}_vh_clean_2.ply"
    npz = tmp_path / "room.npz"
    assert main(["predict", str(scan), "--checkpoint", str(run_dir / "model.safetensors"), "--out", str(npz),
                 "--device", "cpu"]) == 0
    with pytest.raises(Cad2ScanError, match="--scan"):
        scan_document(npz)
    document = scan_document(npz, scan=scan, max_voxels=None)
    with np.load(npz) as saved:
        np.testing.assert_array_equal(document.scenes[0].prediction, saved["labels"])
    assert document.class_names[-1] == "background" and document.scenes[0].ground_truth is not None
    other = tmp_path / "other.npy"
    np.save(other, np.zeros((7, 3), dtype=np.float32))
    with pytest.raises(Cad2ScanError, match="7"):
        scan_document(npz, scan=other)


def test_run_folder_samples_show_source_models_classes_and_synthetic_points(run_dir, tmp_path):
    assert is_run_folder(run_dir)
    out = tmp_path / "samples.html"
    assert main(["view", str(run_dir), "--samples", "3", "--out", str(out), "--quiet", "--mode", "model"]) == 0
    data = read_page_data(out.read_text(encoding="utf-8"))
    assert [s["name"] for s in data["scenes"]] == ["sample 0 (step 0, slot 0)", "sample 1 (step 0, slot 1)",
                                                   "sample 2 (step 1, slot 0)"]
    for packed in data["scenes"]:
        decoded = unpack_scene(packed, len(data["classes"]))
        synthetic = decoded["is_synthetic"]
        assert synthetic.any() and (~synthetic).any()  # models mixed into a scan
        np.testing.assert_array_equal(decoded["model_id"] >= 0, synthetic)
        assert np.all(decoded["ground_truth"][~synthetic] == -1) and np.all(decoded["ground_truth"][synthetic] >= 0)
        models = {m["id"]: m["label"] for m in packed["models"]}
        for model, label in models.items():  # legend label = class of that model's points
            assert set(decoded["ground_truth"][decoded["model_id"] == model]) == {label}
        assert len(models) == 12  # 11 target models + 1 negative (background)


def test_run_folder_rebuilds_the_samples_training_saw(run_dir):
    from cad2scan.config import load_config
    from cad2scan.train.data import BatchStream
    from cad2scan.train.loop import prepare_training_data
    from cad2scan.train.loop import sample_builder

    document = view_document(run_dir, samples=2)
    cfg = load_config(run_dir / "config.yaml")
    data = prepare_training_data(cfg, with_eval=False, progress=False)
    stream = BatchStream(sample_builder(cfg, data), data.train_scenes, 2, cfg.data.voxel_size, cfg.train.seed, 1)
    np.testing.assert_array_equal(document.scenes[1].coord, stream.build_sample(0, 1)[0]["coord"])


def test_single_recipe_segments_are_laid_side_by_side():
    segments = [{"coord": np.zeros((5, 3)) + i, "label": np.full(5, i), "is_synthetic": np.ones(5, bool),
                 "model_id": np.zeros(5, int)} for i in range(3)]
    scene = sample_scene(segments, "single", gap=0.5)
    assert sorted(set(scene.model_id)) == [0, 1, 2] and scene.model_labels == {0: 0, 1: 1, 2: 2}
    assert sorted(set(scene.coord[:, 0])) == [0.0, 0.5, 1.0]


def test_run_folder_errors_are_clear(run_dir, tmp_path):
    with pytest.raises(Cad2ScanError, match="--samples N"):
        view_document(run_dir)
    with pytest.raises(Cad2ScanError, match="drop --checkpoint"):
        view_document(run_dir, samples=1, checkpoint="x.safetensors")
    scan = tmp_path / "s.npy"
    np.save(scan, np.ones((4, 3), dtype=np.float32))
    with pytest.raises(Cad2ScanError, match="needs a run folder"):
        view_document(scan, samples=2)


def test_scan_without_checkpoint_and_labels_file(tmp_path):
    rng = np.random.default_rng(0)
    scan = tmp_path / "pts.npy"
    np.save(scan, rng.uniform(0, 3, (200, 3)).astype(np.float32))
    labels = tmp_path / "labels.txt"
    np.savetxt(labels, rng.integers(-1, 3, 200), fmt="%d")
    document = scan_document(scan, labels=labels, labels_as="class", categories="s3dis4")
    assert document.class_names == ["bookcase", "chair", "sofa", "table", "background"]
    np.testing.assert_array_equal(document.scenes[0].ground_truth, np.loadtxt(labels))
    assert scan_document(scan).scenes[0].layers() == []  # just the scan: coloured by height
    np.savetxt(labels, np.zeros(5), fmt="%d")
    with pytest.raises(DataFormatError, match="5 labels for a scan of 200 points"):
        scan_document(scan, labels=labels)


def test_empty_scan_and_unknown_class_fail_on_the_command_line(tmp_path, capsys):
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 3), dtype=np.float32))
    assert main(["view", str(empty), "--out", str(tmp_path / "e.html")]) == 2
    assert "empty.npy: scan has no points" in capsys.readouterr().err
    scan = tmp_path / "pts.xyz"
    scan.write_text("0 0 0\n1 1 1\n")
    assert main(["view", str(scan), "--class", "unicorn", "--out", str(tmp_path / "u.html")]) == 2
    err = capsys.readouterr().err
    assert "unicorn" in err and "chair" in err
    assert not (tmp_path / "u.html").exists()
    with pytest.raises(EmptyScanError):
        scan_document(empty)
    with pytest.raises(UnknownClassError):
        from cad2scan.viewer.page import build_html

        build_html(scan_document(scan, class_name="unicorn"))


def test_real_scannet_scene_shows_its_nyu40_labels_as_classes(tmp_path):
    scene = SHARED / "scannet" / "scans" / "scene0470_00"
    if not scene.is_dir():
        pytest.skip("shared/data/scannet is absent (real ScanNet sample data lives beside the repository)")
    out = tmp_path / "scene.html"
    assert main(["view", str(scene), "--out", str(out), "--max-points", "20000"]) == 0
    data = read_page_data(out.read_text(encoding="utf-8"))
    packed = data["scenes"][0]
    assert (packed["count"], packed["total"]) == (20000, 67465)
    decoded = unpack_scene(packed, len(data["classes"]))
    names = [c["name"] for c in data["classes"]]
    present = {names[i] for i in np.unique(decoded["ground_truth"]) if i >= 0}
    assert {"chair", "table", "door", "background"} <= present
    # chair has 15,712 of 67,465 vertices: about 23 % of a uniform subsample
    assert 0.19 < (decoded["ground_truth"] == names.index("chair")).mean() < 0.27
