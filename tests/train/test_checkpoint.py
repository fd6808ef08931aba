import json
import logging
import pickle

import numpy as np
import pytest
import torch

from cad2scan.config import load_config
from cad2scan.errors import CheckpointError
from cad2scan.geometry.voxel import voxelise
from cad2scan.model.backbone import make_sparse_input
from cad2scan.model.net import RTLNet
from cad2scan.train.checkpoint import (
    FORMAT,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)

NAMES = ["chair", "table", "sofa", "background"]
TINY = ["model.backbone.width_scale=0.25", "model.backbone.out_channels=16", "model.hull.num_prototypes=8",
        "train.lr=0.0005", "name=tiny"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_config():
    return load_config("demo", TINY)


@pytest.fixture(scope="module")
def sparse_input():
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.uniform(0, 0.8, (600, 3)), rng.uniform([1.0, 0, 0], [1.6, 0.4, 1.2], (400, 3))])
    return make_sparse_input([voxelise(points, 0.05).voxel_coords, voxelise(points[:300], 0.05).voxel_coords])


def _trained_like(cfg, num_classes, seed=0):
    """A net whose weights (BN statistics included) differ from a fresh init."""
    torch.manual_seed(seed)
    net = RTLNet(cfg.model, num_classes)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn_like(tensor))
            elif name.endswith("num_batches_tracked"):
                tensor.fill_(17)
    return net.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_config):
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    net = _trained_like(tiny_config, len(NAMES))
    save_checkpoint(path, net, tiny_config, NAMES, extra={"steps": 12})
    return path, net


def test_round_trip_gives_identical_weights_config_and_classes(saved, tiny_config):
    path, net = saved
    loaded = load_checkpoint(path)
    assert loaded.config == tiny_config
    assert loaded.config.model.hull.num_prototypes == 8
    assert loaded.class_names == NAMES
    assert loaded.net.anchors.num_classes == 4
    original, restored = net.state_dict(), loaded.net.state_dict()
    assert list(original) == list(restored)
    for name in original:
        assert original[name].dtype == restored[name].dtype, name
        assert torch.equal(original[name], restored[name]), name
    assert json.loads(loaded.metadata["extra"]) == {"steps": 12}
    assert loaded.metadata["format"] == FORMAT


def test_round_trip_gives_identical_outputs(saved, sparse_input):
    path, net = saved
    loaded = load_checkpoint(path).net.eval()
    with torch.no_grad():
        expected, actual = net(sparse_input), loaded(sparse_input)
    assert set(expected) == {"features", "coefficients", "aligned", "logits"}
    assert expected["logits"].shape == (len(sparse_input.feats), 4)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_round_trip_without_hull(tmp_path):
    cfg = load_config("demo", TINY + ["model.use_hull=false"])
    net = _trained_like(cfg, 3)
    save_checkpoint(tmp_path / "m.safetensors", net, cfg, ["a", "b", "background"])
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.net.hull is None
    assert not any(k.startswith("hull.") for k in loaded.net.state_dict())
    assert torch.equal(loaded.net.anchors.anchors, net.anchors.anchors)


def test_metadata_is_readable_without_loading_weights(saved, tiny_config):
    path, _ = saved
    metadata = read_checkpoint_metadata(path)
    assert json.loads(metadata["class_names"]) == NAMES
    assert "num_prototypes: 8" in metadata["config"]
    assert len(metadata["sha256"]) == 64


def test_different_class_list_rebuilds_only_the_anchor_head(saved, caplog):
    path, net = saved
    new_names = ["chair", "bed", "background"]
    with caplog.at_level(logging.WARNING, logger="cad2scan.train.checkpoint"):
        loaded = load_checkpoint(path, class_names=new_names)
    assert loaded.class_names == new_names
    assert loaded.net.anchors.anchors.shape == (3, 16)
    kept = {k: v for k, v in net.state_dict().items() if not k.startswith("anchors.")}
    restored = loaded.net.state_dict()
    for name, tensor in kept.items():
        assert torch.equal(tensor, restored[name]), name
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "re-initialised" in warnings[0].getMessage() and "bed" in warnings[0].getMessage()


def test_same_class_list_logs_no_warning(saved, caplog):
    path, _ = saved
    with caplog.at_level(logging.WARNING, logger="cad2scan.train.checkpoint"):
        load_checkpoint(path, class_names=list(NAMES))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_save_is_atomic_and_overwrites(tmp_path, tiny_config):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, _trained_like(tiny_config, 4, seed=1), tiny_config, NAMES)
    first = path.read_bytes()
    save_checkpoint(path, _trained_like(tiny_config, 4, seed=2), tiny_config, NAMES)
    assert path.read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


# ------------------------------------------------------------------ damaged files


def _assert_rejected(path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    return str(info.value)


def _header_end(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def test_flipped_bytes_in_the_header_are_detected(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    end = _header_end(data)
    rng = np.random.default_rng(0)
    positions = sorted({0, 3, 8, 9, end - 2, end - 1} | set(rng.integers(8, end, 24).tolist()))
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        target = tmp_path / f"flip_{position}.safetensors"
        target.write_bytes(bytes(damaged))
        _assert_rejected(target)


def test_changed_class_name_in_the_metadata_is_detected(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    damaged = data.replace(b"table", b"tabla", 1)
    assert damaged != data and len(damaged) == len(data)
    target = tmp_path / "renamed.safetensors"
    target.write_bytes(damaged)
    assert "checksum" in _assert_rejected(target)


def test_flipped_bytes_in_the_weights_are_detected(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    end = _header_end(data)
    for position in (end, (end + len(data)) // 2, len(data) - 1):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        target = tmp_path / f"weights_{position}.safetensors"
        target.write_bytes(bytes(damaged))
        assert "checksum" in _assert_rejected(target)


@pytest.mark.parametrize("keep", [0, 5, 8, 100, -1])
def test_truncated_file_raises_checkpoint_error(saved, tmp_path, keep):
    path, _ = saved
    data = path.read_bytes()
    target = tmp_path / "truncated.safetensors"
    target.write_bytes(data[: keep if keep >= 0 else len(data) - 1])
    _assert_rejected(target)


def test_random_bytes_raise_checkpoint_error(tmp_path):
    target = tmp_path / "noise.safetensors"
    target.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_rejected(target)


def test_text_file_raises_checkpoint_error(tmp_path):
    target = tmp_path / "notes.safetensors"
    target.write_text("this is not a checkpoint\n" * 10)
    _assert_rejected(target)


def test_renamed_torch_pickle_raises_checkpoint_error_without_unpickling(tmp_path, tiny_config):
    net = RTLNet(tiny_config.model, 4)
    target = tmp_path / "model.safetensors"
    torch.save(net.state_dict(), target)  # zip-based .pt
    _assert_rejected(target)
    legacy = tmp_path / "legacy.safetensors"
    legacy.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=2))
    _assert_rejected(legacy)


def test_plain_safetensors_file_without_cad2scan_metadata_is_rejected(tmp_path):
    from safetensors.torch import save_file

    target = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(target), metadata={"format": "pt"})
    assert "not a cad2scan checkpoint" in _assert_rejected(target)


def test_missing_file_raises_checkpoint_error(tmp_path):
    assert "not found" in _assert_rejected(tmp_path / "absent.safetensors")


def test_weights_that_do_not_fit_the_config_raise_checkpoint_error(tmp_path, tiny_config):
    """A checkpoint whose embedded config disagrees with its tensors (K=8 config, K=4 weights)."""
    other = load_config("demo", TINY + ["model.hull.num_prototypes=4"])
    target = tmp_path / "mismatch.safetensors"
    save_checkpoint(target, RTLNet(other.model, 4), tiny_config, NAMES)
    assert "do not fit" in _assert_rejected(target)


def test_checkpoint_without_digest_is_rejected(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    path, _ = saved
    metadata = dict(read_checkpoint_metadata(path))
    del metadata["sha256"]
    target = tmp_path / "undigested.safetensors"
    save_file(load_file(str(path)), str(target), metadata=metadata)
    assert "sha256" in _assert_rejected(target)
