"""End to end through the ``cad2scan`` command: demo, predict, evaluate, and bad input."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from cad2scan.cli import main
from cad2scan.io.ply import read_ply_points, write_ply

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def smoke_demo(tmp_path_factory):
    """One ``cad2scan demo --smoke`` run shared by the tests of this module."""
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--smoke", "--quiet"]) == 0
    return out


def test_readme_demo_command_runs_and_writes_results_json(smoke_demo):
    # The README's first command is the one this test runs (plus --smoke for speed).
    commands = re.findall(r"^pip install -e \. && (cad2scan demo.*?)\s+#", README.read_text(), re.M)
    assert commands == ["cad2scan demo"]
    results = json.loads((smoke_demo / "results.json").read_text())
    assert set(results["methods"]) == {"baseline", "pda", "pda_fa"}
    for row in results["methods"].values():
        assert set(row) == {"AmAP", "AP", "mIoU"}
        assert set(row["AP"]) == {"bathtub", "bed", "bookshelf", "chair", "curtain", "desk", "door", "sink",
                                  "sofa", "table", "toilet"}
        present = [v for v in row["AP"].values() if v is not None]
        assert present and all(0.0 <= v <= 100.0 for v in present)
        assert row["AmAP"] == pytest.approx(np.mean(present))
    assert results["meta"]["smoke"] is True
    predictions = sorted((smoke_demo / "predictions").glob("*.ply"))
    assert {p.stem.split("_", 2)[-1] for p in predictions} == {"baseline", "pda", "pda_fa"}
    scenes = results["meta"]["eval_scenes"][:2]  # the first two evaluation rooms, per method
    assert sorted(p.stem for p in predictions) == sorted(f"{s}_{m}" for s in scenes for m in ("baseline", "pda", "pda_fa"))


def test_readme_test_command_is_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    command = re.findall(r"^(pip install -e '\.\[test\]' && python -m pytest -q)", README.read_text(), re.M)
    assert command and command[0] in ci


def test_predict_writes_probabilities_in_input_order_and_a_coloured_ply(smoke_demo, tmp_path):
    checkpoint = smoke_demo / "runs" / "pda_fa" / "model.safetensors"
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(0, 4, (3000, 2)), rng.uniform(0, 2, 3000)].astype(np.float32)
    scan = tmp_path / "my scan.ply"
    write_ply(scan, points, binary=False)
    npz, ply = tmp_path / "pred.npz", tmp_path / "pred.ply"
    assert main(["predict", str(scan), "--checkpoint", str(checkpoint), "--out", str(npz), "--out", str(ply),
                 "--device", "cpu"]) == 0
    with np.load(npz) as data:
        probabilities, classes, labels = data["probabilities"], list(data["classes"]), data["labels"]
    assert probabilities.shape == (3000, 12) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert classes[-1] == "background" and classes[0] == "bathtub"
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=1))
    coloured = read_ply_points(ply)
    np.testing.assert_allclose(coloured["coord"], points, atol=1e-6)  # same points, same order
    np.testing.assert_array_equal(coloured["label"], labels)


def test_evaluate_command_scores_a_checkpoint(smoke_demo, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(smoke_demo / "runs" / "pda" / "model.safetensors"),
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    row = json.loads(out.read_text())["methods"]["pda"]
    demo_row = json.loads((smoke_demo / "results.json").read_text())["methods"]["pda"]
    assert row["AmAP"] == pytest.approx(demo_row["AmAP"], abs=1e-6)


@pytest.mark.parametrize("content, reason", [
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\nproperty float y\n"
     b"property float z\nend_header\n" + b"\x00" * 40, "truncated"),
    (b"not a point cloud at all", "PLY"),
])
def test_predict_on_a_corrupt_ply_is_one_clear_error(smoke_demo, tmp_path, capsys, content, reason):
    bad = tmp_path / "broken.ply"
    bad.write_bytes(content)
    code = main(["predict", str(bad), "--checkpoint", str(smoke_demo / "runs" / "pda_fa" / "model.safetensors")])
    err = capsys.readouterr().err
    assert code == 2
    assert "broken.ply" in err and "Traceback" not in err
    assert re.search(reason, err, re.I)


def test_predict_on_an_empty_or_nan_scan_names_the_file(smoke_demo, tmp_path, capsys):
    checkpoint = str(smoke_demo / "runs" / "pda_fa" / "model.safetensors")
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 3), dtype=np.float32))
    assert main(["predict", str(empty), "--checkpoint", checkpoint]) == 2
    assert "empty.npy" in capsys.readouterr().err
    nan = tmp_path / "nan.xyz"
    nan.write_text("0 0 0\n1 nan 0\n2 2 2\n")
    assert main(["predict", str(nan), "--checkpoint", checkpoint]) == 2
    assert "nan.xyz" in capsys.readouterr().err


def test_unknown_config_key_is_named(tmp_path, capsys):
    assert main(["train", "--config", "demo", "--set", "train.lrr=0.1", "--out", str(tmp_path)]) == 2
    assert "train.lrr" in capsys.readouterr().err


def test_missing_or_tampered_checkpoint_is_one_clear_error(tmp_path, capsys):
    scan = tmp_path / "scan.npy"
    np.save(scan, np.ones((10, 3), dtype=np.float32))
    assert main(["predict", str(scan), "--checkpoint", str(tmp_path / "nope.safetensors")]) == 2
    assert "nope.safetensors" in capsys.readouterr().err
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert main(["predict", str(scan), "--checkpoint", str(fake)]) == 2
    assert "fake.safetensors" in capsys.readouterr().err


def test_a_class_missing_from_the_cad_library_is_named(tmp_path, capsys):
    from cad2scan.synth.generate import generate_demo_dataset

    generate_demo_dataset(tmp_path / "data", models_per_class_train=1, models_per_class_test=1, train_rooms=1,
                          eval_rooms=1, progress=False)
    for path in (tmp_path / "data" / "ModelNet" / "toilet").rglob("*.off"):
        path.unlink()
    args = shlex.split(f"train --config demo --quiet --out {tmp_path / 'run'} "
                       f"--set data.cad_root={tmp_path / 'data' / 'ModelNet'} "
                       f"--set data.scene_root={tmp_path / 'data' / 'ScanNet'} --set data.cache_dir={tmp_path / 'c'}")
    assert main(args) == 2
    assert "toilet" in capsys.readouterr().err
