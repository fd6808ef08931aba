"""Resumable training state: safetensors + JSON, verified, atomic, no pickle."""

import json
import pickle

import pytest
import torch

from cad2scan.config import load_config
from cad2scan.errors import CheckpointError
from cad2scan.model.net import RTLNet
from cad2scan.train.loop import _resume_config_check, lr_factor
from cad2scan.train.state import (
    checkpoints_dir,
    latest_resume_point,
    list_resume_points,
    load_train_state,
    read_state_document,
    save_train_state,
)

NAMES = ["chair", "table", "background"]
TINY = ["model.backbone.width_scale=0.25", "model.backbone.out_channels=8", "model.hull.num_prototypes=4",
        "train.lr_schedule=cosine", "train.warmup_steps=2"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def cfg():
    return load_config("demo", TINY)


def _run_objects(cfg, seed=0, amp_scale=None):
    torch.manual_seed(seed)
    net = RTLNet(cfg.model, len(NAMES))
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.train.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, 100))
    scaler = torch.amp.GradScaler("cpu", enabled=amp_scale is not None, init_scale=amp_scale or 2.0**16)
    return net, optimizer, scheduler, scaler


def _take_steps(net, optimizer, scheduler, steps=3):
    for _ in range(steps):
        optimizer.zero_grad()
        loss = sum((p.float() ** 2).sum() for p in net.parameters())
        loss.backward()
        optimizer.step()
        scheduler.step()


def test_round_trip_restores_weights_optimizer_scheduler_scaler_and_rng(tmp_path, cfg):
    net, optimizer, scheduler, scaler = _run_objects(cfg, amp_scale=1024.0)
    _take_steps(net, optimizer, scheduler)
    scaler.scale(torch.tensor(1.0))  # the scale tensor exists once something was scaled
    scaler.update(new_scale=512.0)
    torch.manual_seed(123)
    folder = save_train_state(tmp_path, 3, net, optimizer, scheduler, scaler, cfg, NAMES)
    expected_draw = torch.rand(4)

    net2, optimizer2, scheduler2, scaler2 = _run_objects(cfg, seed=9, amp_scale=1.0)
    torch.manual_seed(999)
    step = load_train_state(folder, net2, optimizer2, scheduler2, scaler2)
    assert step == 3
    assert torch.equal(torch.rand(4), expected_draw)  # the RNG continues where it was saved
    for (name, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), name
    saved, loaded = optimizer.state_dict(), optimizer2.state_dict()
    assert loaded["param_groups"] == saved["param_groups"]
    assert isinstance(loaded["param_groups"][0]["betas"], tuple)
    for index, entries in saved["state"].items():
        for key, value in entries.items():
            assert torch.equal(loaded["state"][index][key], value), (index, key)
    assert scheduler2.state_dict() == scheduler.state_dict()
    assert scheduler2.get_last_lr() == scheduler.get_last_lr()
    assert scaler2.get_scale() == 512.0
    # both continue identically
    _take_steps(net, optimizer, scheduler, 1)
    _take_steps(net2, optimizer2, scheduler2, 1)
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)


def test_state_files_hold_no_pickle_and_loading_never_unpickles(tmp_path, cfg, monkeypatch):
    net, optimizer, scheduler, scaler = _run_objects(cfg)
    _take_steps(net, optimizer, scheduler, 1)
    folder = save_train_state(tmp_path, 1, net, optimizer, scheduler, scaler, cfg, NAMES)
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "state.json", "tensors.safetensors"]
    json.loads((folder / "state.json").read_text())  # plain JSON
    for name in ("model.safetensors", "tensors.safetensors"):
        assert b"\x80\x04\x95" not in (folder / name).read_bytes()[:64]  # no pickle protocol-4 header

    def no_unpickling(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    assert load_train_state(folder, *_run_objects(cfg)) == 1


@pytest.mark.parametrize("target", ["state.json", "tensors.safetensors", "model.safetensors"])
def test_a_tampered_file_is_a_checkpoint_error(tmp_path, cfg, target):
    net, optimizer, scheduler, scaler = _run_objects(cfg)
    _take_steps(net, optimizer, scheduler, 1)
    folder = save_train_state(tmp_path, 1, net, optimizer, scheduler, scaler, cfg, NAMES)
    path = folder / target
    if target == "state.json":
        document = json.loads(path.read_text())
        document["step"] = 7
        path.write_text(json.dumps(document))
    else:
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x01  # a bit inside the last tensor
        path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch") as error:
        load_train_state(folder, *_run_objects(cfg))
    assert str(folder) in str(error.value)


def test_partial_folders_are_ignored_and_old_checkpoints_pruned(tmp_path, cfg):
    objects = _run_objects(cfg)
    for step in (2, 4, 6):
        save_train_state(tmp_path, step, *objects, cfg, NAMES, keep=2)
    assert [p.step for p in list_resume_points(tmp_path)] == [6, 4]
    partial = checkpoints_dir(tmp_path) / "step-00000008.partial"
    partial.mkdir()
    (partial / "state.json").write_text("{}")  # a write the kill interrupted
    assert latest_resume_point(tmp_path).step == 6
    read_state_document(latest_resume_point(tmp_path).folder)


def test_resume_refuses_a_checkpoint_of_another_network(tmp_path, cfg):
    folder = save_train_state(tmp_path, 1, *_run_objects(cfg), cfg, NAMES)
    _resume_config_check(folder, cfg, NAMES)  # same network: fine
    wider = load_config("demo", TINY[1:] + ["model.backbone.width_scale=0.5"])
    with pytest.raises(CheckpointError, match="network or classes differ"):
        _resume_config_check(folder, wider, NAMES)
    with pytest.raises(CheckpointError, match="network or classes differ"):
        _resume_config_check(folder, cfg, ["chair", "sofa", "background"])


def test_lr_schedule_warms_up_then_decays_to_zero(cfg):
    factor = lr_factor(cfg, 10)  # warm-up 2 steps, cosine over 10
    assert factor(0) == pytest.approx(0.5 * (0.5 * (1 + 1)))
    assert factor(1) == pytest.approx(1.0 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi / 10)).item()))
    values = [factor(i) for i in range(2, 11)]
    assert values == sorted(values, reverse=True) and values[-1] == pytest.approx(0.0)
    cfg.train.lr_schedule, cfg.train.warmup_steps = "constant", 0
    assert {lr_factor(cfg, 10)(i) for i in range(10)} == {1.0}
