"""What a run reports: metrics.jsonl records, evaluation while training, TensorBoard scalars."""

import copy
import json
import logging
import math
import sys
import types

import pytest

from cad2scan.train import monitor
from cad2scan.train.loop import prepare_training_data, train
from cad2scan.train.monitor import trim_metrics

STEPS = 3
RUN = ["train.batch_size=1", "train.log_every=2", "train.eval_every=2"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_demo_run):
    root, cfg = tiny_demo_run("monitor", STEPS, RUN)
    return root, cfg, prepare_training_data(cfg, with_eval=True, progress=False, workers=1)


class FakeWriter:
    """Stands in for torch.utils.tensorboard.SummaryWriter."""

    instances: list = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, float(value), step))

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def run_with_tensorboard(tiny):
    root, cfg, data = tiny
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    patch = pytest.MonkeyPatch()
    patch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    try:
        result = train(cfg, root / "run", data=data, progress=False)
    finally:
        patch.undo()
    return root / "run", result, FakeWriter.instances[-1]


def test_metrics_jsonl_has_throughput_and_evaluation_records(run_with_tensorboard, tiny):
    run_dir, result, _ = run_with_tensorboard
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "loss" in r]
    eval_records = [r for r in records if "eval" in r]
    assert [r["step"] for r in train_records] == [2, 3] and [r["step"] for r in eval_records] == [2, 3]
    for record in train_records:
        assert record["scans_per_s"] > 0 and record["points_per_s"] > 1000 * record["scans_per_s"]
        assert 0.0 <= record["data_wait_frac"] <= 1.0 and record["lr"] == pytest.approx(1e-3)
        assert math.isfinite(record["loss"]) and record["voxels"] > 0
    assert train_records[-1]["loss"] == pytest.approx(result.final_loss)
    names = tiny[2].categories.target_names
    for record in eval_records:
        assert set(record["eval"]["ap"]) == set(names) and "amap" in record["eval"]


def test_tensorboard_gets_loss_lr_throughput_and_eval_scalars(run_with_tensorboard, tiny):
    run_dir, _, writer = run_with_tensorboard
    assert writer.log_dir == str(run_dir / "tensorboard") and writer.closed and writer.purge_step is None
    tags = {tag for tag, _, _ in writer.scalars}
    assert {"train/loss", "train/lr", "throughput/scans_per_s", "throughput/points_per_s",
            "throughput/data_wait_frac", "eval/AmAP", "eval/mIoU"} <= tags
    assert {f"eval/AP/{name}" for name in tiny[2].categories.target_names} <= tags
    assert sorted({step for tag, _, step in writer.scalars if tag == "train/loss"}) == [2, 3]


def test_without_tensorboard_the_run_says_so_once(tiny, monkeypatch, caplog):
    root, cfg, data = tiny
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    monkeypatch.setattr(monitor, "_tensorboard_off_logged", False)
    cfg = copy.deepcopy(cfg)
    cfg.train.eval_every, cfg.train.steps_per_epoch = 0, 1
    with caplog.at_level(logging.INFO, logger="cad2scan"):
        train(cfg, root / "plain1", data=data, progress=False)
        train(cfg, root / "plain2", data=data, progress=False)
    assert caplog.text.count("TensorBoard logging is off") == 1
    assert not (root / "plain1" / "tensorboard").exists()


def test_trim_metrics_drops_records_after_the_checkpoint_and_cut_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "eval": {}}\n{"step": 3}\n{"step": 4, "lo')
    trim_metrics(path, 2)
    assert path.read_text() == '{"step": 1}\n{"step": 2, "eval": {}}\n'
