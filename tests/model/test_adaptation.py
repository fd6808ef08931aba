"""Domain-adaptation heads: gradient reversal, discriminators, node pooling, MCD, losses."""

import pytest
import torch
from torch import nn

from cad2scan.model.adaptation import (
    DomainDiscriminator,
    FeatureAdversarialAdaptation,
    PointDANAdaptation,
    adaptation_loss,
    build_adaptation,
    classifier_discrepancy,
    domain_loss,
    node_is_source,
    pool_cells,
    reverse_gradient,
    source_mask_from_voxels,
)


def _domain_accuracy(discriminator: nn.Module, features: torch.Tensor, is_source: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((discriminator(features) > 0) == is_source).float().mean())


def _fit_discriminator(features, is_source, seed, steps=150):
    """A fresh discriminator trained on fixed features (no reversal involved)."""
    torch.manual_seed(seed)
    discriminator = DomainDiscriminator(features.shape[1], hidden=32)
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=1e-2)
    for _ in range(steps):
        optimiser.zero_grad()
        domain_loss(discriminator(features), is_source).backward()
        optimiser.step()
    return discriminator


def _two_domains(generator, n=400, shift=3.0):
    """4-d inputs: the domains differ by a mean shift along x0; the task label is the sign of x1."""
    source = torch.randn(n, 4, generator=generator)
    target = torch.randn(n, 4, generator=generator)
    target[:, 0] += shift
    inputs = torch.cat([source, target])
    is_source = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    return inputs, is_source, (source[:, 1] > 0).long()


def test_gradient_reversal_is_identity_forward_and_negates_and_scales_the_gradient():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, scale=0.25)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.25, -0.5, -0.75]))


def test_discriminator_separates_two_distinct_feature_clouds_without_reversal():
    generator = torch.Generator().manual_seed(0)
    inputs, is_source, _ = _two_domains(generator)
    discriminator = _fit_discriminator(inputs, is_source, seed=0)
    held_out, held_out_source, _ = _two_domains(generator)
    assert _domain_accuracy(discriminator, held_out, held_out_source) > 0.9


def test_adversarial_training_through_reversal_drives_domain_accuracy_to_chance():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    inputs, is_source, task_label = _two_domains(generator)
    extractor = nn.Linear(4, 3)
    task_head = nn.Linear(3, 2)
    adaptation = FeatureAdversarialAdaptation(3, hidden=32)
    held_out, held_out_source, held_out_task = _two_domains(generator)

    before = _fit_discriminator(extractor(inputs).detach(), is_source, seed=2)
    accuracy_before = _domain_accuracy(before, extractor(held_out).detach(), held_out_source)
    assert accuracy_before > 0.85  # a random linear map keeps the domain shift visible

    parameters = [*extractor.parameters(), *task_head.parameters(), *adaptation.parameters()]
    optimiser = torch.optim.SGD(parameters, lr=0.1, momentum=0.9)  # steadier than Adam in this min-max game
    source_voxel = torch.nonzero(is_source).squeeze(1)
    for _ in range(400):
        optimiser.zero_grad()
        features = extractor(inputs)
        outputs = adaptation(features, features, torch.zeros(len(inputs), 4, dtype=torch.long))
        task = nn.functional.cross_entropy(task_head(features[source_voxel]), task_label)
        (task + adaptation_loss(outputs, is_source, source_voxel, task_label)).backward()
        optimiser.step()

    after = _fit_discriminator(extractor(inputs).detach(), is_source, seed=3)
    accuracy_after = _domain_accuracy(after, extractor(held_out).detach(), held_out_source)
    with torch.no_grad():
        task_accuracy = float((task_head(extractor(held_out[held_out_source])).argmax(1) == held_out_task)
                              .float().mean())
    print(f"domain accuracy {accuracy_before:.3f} -> {accuracy_after:.3f}, task accuracy {task_accuracy:.3f}")
    assert accuracy_after < 0.6  # chance is 0.5
    assert task_accuracy > 0.9  # the features still carry what the task needs


def test_node_pooling_matches_a_hand_computed_mean():
    # batch 0: voxels (0,0,0), (3,3,3) share cell (0,0,0); (4,0,0) is cell (1,0,0);
    # (-1,0,0) is cell (-1,0,0). batch 1: (0,0,0) is its own node.
    coords = torch.tensor([[0, 0, 0, 0], [0, 3, 3, 3], [0, 4, 0, 0], [0, -1, 0, 0], [1, 0, 0, 0]])
    features = torch.tensor([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0], [7.0, 40.0], [9.0, 50.0]])
    nodes, node_index = pool_cells(features, coords, cell=4)
    assert nodes.shape == (4, 2)
    expected = {0: [2.0, 15.0], 1: [2.0, 15.0], 2: [5.0, 30.0], 3: [7.0, 40.0], 4: [9.0, 50.0]}
    for voxel, mean in expected.items():
        assert nodes[node_index[voxel]].tolist() == mean
    assert node_index[0] == node_index[1] and len(set(node_index.tolist())) == 4


def test_node_is_source_when_any_of_its_voxels_is():
    node_index = torch.tensor([0, 0, 1, 2, 2])
    source = torch.tensor([False, True, False, False, False])
    assert node_is_source(source, node_index, 3).tolist() == [True, False, False]


def test_mcd_discrepancy_is_zero_for_identical_heads_and_positive_otherwise():
    torch.manual_seed(0)
    module = PointDANAdaptation(8, num_classes=5)
    features = torch.randn(30, 8)
    coords = torch.cat([torch.zeros(30, 1, dtype=torch.long), torch.randint(0, 10, (30, 3))], dim=1)
    logits = module(features, features, coords)["mcd_logits"]
    assert classifier_discrepancy(logits[0], logits[1]) > 0.01
    module.heads[1].load_state_dict(module.heads[0].state_dict())
    logits = module(features, features, coords)["mcd_logits"]
    assert classifier_discrepancy(logits[0], logits[1]) == 0.0


def test_mcd_game_heads_increase_and_features_decrease_the_target_discrepancy():
    torch.manual_seed(0)
    module = PointDANAdaptation(8, num_classes=4)
    features = torch.randn(40, 8, requires_grad=True)
    coords = torch.zeros(40, 4, dtype=torch.long)
    source = torch.arange(40) < 4  # a few source voxels, the rest target
    empty = torch.zeros(0, dtype=torch.long)

    def discrepancy():
        with torch.no_grad():
            logits = module(features, features, coords)["mcd_logits"][:, ~source]
        return float(classifier_discrepancy(logits[0], logits[1]))

    start = discrepancy()
    loss = adaptation_loss(module(features, features, coords), source, empty, empty)
    head_grads = torch.autograd.grad(loss, list(module.heads.parameters()), retain_graph=True)
    feature_grad = torch.autograd.grad(loss, features)[0]
    with torch.no_grad():  # a small gradient step for the heads alone, then for the features alone
        for parameter, grad in zip(module.heads.parameters(), head_grads):
            parameter -= 0.05 * grad
    assert discrepancy() > start
    with torch.no_grad():
        for parameter, grad in zip(module.heads.parameters(), head_grads):
            parameter += 0.05 * grad
        features -= 0.5 * feature_grad
    assert discrepancy() < start


@pytest.mark.parametrize("method", ["adda", "pointdan"])
@pytest.mark.parametrize("present", ["source_only", "target_only"])
def test_loss_is_finite_and_connected_when_a_domain_is_absent(method, present):
    torch.manual_seed(0)
    module = build_adaptation(method, feature_dim=6, num_classes=3)
    features = torch.randn(20, 6, requires_grad=True)
    coords = torch.cat([torch.zeros(20, 1, dtype=torch.long), torch.randint(0, 12, (20, 3))], dim=1)
    source = torch.full((20,), present == "source_only")
    loss_voxel = torch.arange(5) if present == "source_only" else torch.zeros(0, dtype=torch.long)
    loss_label = torch.zeros(len(loss_voxel), dtype=torch.long)
    loss = adaptation_loss(module(features, features, coords), source, loss_voxel, loss_label)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
    assert features.grad is not None
    if method == "adda" or present == "target_only":
        assert loss.item() == 0.0  # nothing to align, no labelled source


def test_domain_loss_is_balanced_between_domains():
    logits = torch.tensor([2.0, 2.0, 2.0, -1.0])
    is_source = torch.tensor([True, True, True, False])
    bce_source = nn.functional.softplus(torch.tensor(-2.0))
    bce_target = nn.functional.softplus(torch.tensor(-1.0))
    assert float(domain_loss(logits, is_source)) == pytest.approx(float(0.5 * (bce_source + bce_target)))


def test_pointdan_loss_fits_both_heads_to_the_source_labels():
    torch.manual_seed(0)
    module = PointDANAdaptation(4, num_classes=3)
    features = torch.randn(12, 4)
    coords = torch.zeros(12, 4, dtype=torch.long)
    outputs = module(features, features, coords)
    source = torch.ones(12, dtype=torch.bool)  # no target: the loss is the heads' cross-entropy only
    loss_voxel, loss_label = torch.arange(12), torch.randint(0, 3, (12,))
    expected = sum(nn.functional.cross_entropy(outputs["mcd_logits"][h], loss_label) for h in range(2))
    assert adaptation_loss(outputs, source, loss_voxel, loss_label).item() == pytest.approx(expected.item(), rel=1e-5)


def test_build_adaptation_none_unknown_and_source_mask_helper():
    assert build_adaptation("none", 8, 3) is None
    assert isinstance(build_adaptation("adda", 8, 3), FeatureAdversarialAdaptation)
    with pytest.raises(ValueError, match="model.adaptation"):
        build_adaptation("dann", 8, 3)
    mask = source_mask_from_voxels(5, torch.tensor([3, 1, 3]))
    assert mask.tolist() == [False, True, False, True, False]
