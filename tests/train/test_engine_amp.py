"""Mixed precision, checked on the CPU: bf16 autocast, and the fp16 GradScaler's skip logic."""

import numpy as np
import pytest
import torch

from cad2scan.config import load_config
from cad2scan.errors import ConfigError
from cad2scan.model.net import RTLNet
from cad2scan.train.distributed import DistContext
from engine_batches import random_tensor_batch
from cad2scan.train.loop import _train_step, configure_precision, global_batch_loss, lr_factor

TINY = ["model.backbone.width_scale=0.25", "model.backbone.out_channels=16", "model.hull.num_prototypes=8"]
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def batch():
    """Two items of random points; every tenth voxel carries a label."""
    return random_tensor_batch(lambda voxels: np.arange(0, voxels, 10))


def _objects(amp: str, init_scale: float = 2.0**16):
    cfg = load_config("demo", TINY + [f"train.amp={amp}"])
    torch.manual_seed(0)
    net = RTLNet(cfg.model, 4)
    dtype = configure_precision(net, cfg.train.amp, CPU)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, 10))
    scaler = torch.amp.GradScaler("cpu", enabled=amp == "fp16", init_scale=init_scale)
    return net, dtype, optimizer, scheduler, scaler


def test_amp_setting_is_validated_and_yaml_off_means_off():
    assert load_config("demo", ["train.amp=off"]).train.amp == "off"  # YAML reads ``off`` as false
    with pytest.raises(ConfigError, match="train.amp"):
        load_config("demo", ["train.amp=fp8"])


def test_bf16_autocast_step_runs_in_bf16_and_keeps_float32_weights(batch):
    net, dtype, optimizer, scheduler, scaler = _objects("bf16")
    assert dtype == torch.bfloat16
    convs = [m for m in net.modules() if hasattr(m, "compute_dtype")]
    assert convs and all(m.compute_dtype == torch.bfloat16 for m in convs)
    reference_net, _, _, _, _ = _objects("off")
    reference, _ = global_batch_loss(reference_net, batch, CPU, None, DistContext())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        from cad2scan.model.backbone import make_sparse_input

        logits = net(make_sparse_input(batch.to_device(CPU)[0], None, CPU))["logits"]
    assert logits.dtype == torch.bfloat16
    before = [p.detach().clone() for p in net.parameters()]
    loss = _train_step(net, batch, CPU, optimizer, scheduler, scaler, dtype, DistContext())
    assert np.isfinite(loss) and loss == pytest.approx(reference.item(), rel=5e-2)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))


def test_fp16_grad_scaler_skips_an_overflowing_step_and_backs_off(batch):
    net, dtype, optimizer, scheduler, scaler = _objects("fp16", init_scale=1e38)
    assert dtype == torch.float16 and scaler.is_enabled()
    before = [p.detach().clone() for p in net.parameters()]
    loss = _train_step(net, batch, CPU, optimizer, scheduler, scaler, dtype, DistContext())
    assert np.isfinite(loss)
    assert all(torch.equal(a, p) for a, p in zip(before, net.parameters()))  # inf gradients: step skipped
    assert scaler.get_scale() == pytest.approx(0.5e38)
    scaler.update(new_scale=1024.0)
    _train_step(net, batch, CPU, optimizer, scheduler, scaler, dtype, DistContext())
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))
    assert scaler.get_scale() == 1024.0
