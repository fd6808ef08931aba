"""The training loss with the domain-adaptation heads of the comparison rows (adda, pointdan)."""

import numpy as np
import pytest
import torch

from cad2scan.config import load_config
from cad2scan.errors import ConfigError
from cad2scan.model.net import RTLNet
from cad2scan.train.distributed import DistContext
from engine_batches import random_tensor_batch
from cad2scan.train.loop import global_batch_loss

CPU = torch.device("cpu")
TINY = ["model.backbone.width_scale=0.25", "model.hull.num_prototypes=8"]


@pytest.fixture(scope="module")
def batch():
    """Two items of random points; the first 300 voxels of each are 'synthetic' (labelled), the rest scene."""
    return random_tensor_batch(lambda voxels: np.arange(300))


def _net(preset: str, weight: float) -> RTLNet:
    cfg = load_config(preset, TINY + [f"model.adaptation_weight={weight}"])
    torch.manual_seed(0)
    return RTLNet(cfg.model, 4)


@pytest.mark.parametrize("preset", ["ablations/adda", "ablations/pointdan"])
def test_adaptation_loss_is_added_to_the_backpropagated_loss_but_not_to_the_logged_value(batch, preset):
    plain = _net("ablations/pda_only", 0.0)
    net = _net(preset, 0.5)
    net.load_state_dict(plain.state_dict(), strict=False)  # same backbone and anchors
    loss_plain, value_plain = global_batch_loss(plain, batch, CPU, None, DistContext())
    loss, value = global_batch_loss(net, batch, CPU, None, DistContext())
    assert value == pytest.approx(value_plain, rel=1e-5)  # logged: the anchor loss alone
    assert abs(loss.item() - value) > 1e-4  # back-propagated: + 0.5 * adaptation loss
    loss.backward()
    head = [p for name, p in net.named_parameters() if name.startswith("adaptation.")]
    assert head and all(p.grad is not None and torch.isfinite(p.grad).all() for p in head)
    assert any(p.grad.abs().sum() > 0 for p in head)


def test_adaptation_weight_zero_gives_the_plain_loss(batch):
    plain = _net("ablations/pda_only", 0.0)
    net = _net("ablations/adda", 0.0)
    net.load_state_dict(plain.state_dict(), strict=False)
    loss_plain, _ = global_batch_loss(plain, batch, CPU, None, DistContext())
    loss, _ = global_batch_loss(net, batch, CPU, None, DistContext())
    assert loss.item() == pytest.approx(loss_plain.item(), rel=1e-6)


def test_adaptation_heads_are_skipped_in_eval_mode(batch):
    from cad2scan.model.backbone import make_sparse_input

    net = _net("ablations/pointdan", 0.1).eval()
    out = net(make_sparse_input(batch.to_device(CPU)[0], None, CPU))
    assert set(out) == {"features", "aligned", "logits"}


@pytest.mark.parametrize("switch", ["align.negatives=scene", "align.mode=models_only", "train.objective=supervised"])
def test_adaptation_is_refused_where_the_source_domain_is_not_the_synthetic_points(switch):
    with pytest.raises(ConfigError, match="model.adaptation"):
        load_config("ablations/adda", [switch])
