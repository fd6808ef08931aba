"""A training process killed mid-run resumes from its last checkpoint to the same weights."""

import copy
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cad2scan.config import config_to_dict
from cad2scan.train.loop import prepare_training_data, train

STEPS = 10
RUN = ["train.batch_size=1", "train.num_workers=1", "train.log_every=1", "train.checkpoint_every=2",
       "train.keep_checkpoints=2", "train.deterministic=true", "train.tensorboard=false"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_demo_run):
    root, cfg = tiny_demo_run("resume", STEPS, RUN)
    data = prepare_training_data(cfg, with_eval=False, progress=False, workers=1)  # fills the cache
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return root, cfg, data, config_file


def _command(config_file, run_dir, *extra):
    return [sys.executable, "-m", "cad2scan", "train", "--config", str(config_file), "--out", str(run_dir),
            "--quiet", *extra]


def test_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_weights(tiny):
    root, cfg, data, config_file = tiny
    reference = train(cfg, root / "uninterrupted", data=data, progress=False)

    run_dir = root / "killed"
    log_file = open(root / "killed.log", "wb")
    process = subprocess.Popen(_command(config_file, run_dir), stdout=subprocess.DEVNULL, stderr=log_file)
    first = run_dir / "checkpoints" / "step-00000002"
    deadline = time.monotonic() + 120
    while not first.is_dir():
        assert process.poll() is None, (root / "killed.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    log_file.close()
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "model.safetensors").exists()  # it died before the end
    killed_at = max(json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines())
    assert 2 <= killed_at < STEPS

    resumed = subprocess.run(_command(config_file, run_dir, "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    final, expected = load_file(str(run_dir / "model.safetensors")), load_file(str(reference.checkpoint))
    assert list(final) == list(expected)
    for name in expected:
        assert torch.equal(final[name], expected[name]), name
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))  # the killed run's extra records were replaced
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert kept == ["step-00000008", "step-00000010"]  # keep_checkpoints=2


def test_resume_without_checkpoint_starts_from_step_zero(tiny, caplog):
    root, cfg, data, _ = tiny
    cfg = copy.deepcopy(cfg)
    cfg.train.steps_per_epoch = 1
    with caplog.at_level("WARNING", logger="cad2scan"):
        result = train(cfg, root / "fresh", data=data, progress=False, resume=True)
    assert result.start_step == 0 and result.steps == 1
    assert "no checkpoint" in caplog.text
    # resuming a finished run trains nothing more and keeps its weights
    again = train(cfg, root / "fresh", data=data, progress=False, resume=True)
    assert again.start_step == again.steps == 1
    assert again.weights_sha256 == result.weights_sha256
