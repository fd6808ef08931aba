import math

import pytest
import torch

from cad2scan.model.anchors import AnchorClassifier, anchor_loss


def _classifier(feature_dim=8, num_classes=4, seed=0):
    torch.manual_seed(seed)
    return AnchorClassifier(feature_dim, num_classes)


def test_logits_are_inner_products_with_the_anchors():
    classifier = _classifier()
    features = torch.randn(10, 8, generator=torch.Generator().manual_seed(1))
    logits = classifier(features)
    assert logits.shape == (10, 4)
    torch.testing.assert_close(logits, features @ classifier.anchors.T)
    assert [name for name, _ in classifier.named_parameters()] == ["anchors"]


def test_probabilities_are_softmax_and_sum_to_one():
    classifier = _classifier()
    features = 5 * torch.randn(50, 8, generator=torch.Generator().manual_seed(2))
    probabilities = classifier.probabilities(features)
    assert (probabilities >= 0).all()
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(50), atol=1e-6, rtol=0)
    torch.testing.assert_close(probabilities, torch.softmax(classifier(features), dim=1))


def test_loss_equals_hand_computed_cross_entropy_on_a_tiny_example():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [5.0, 5.0, 5.0], [1.0, 2.0, 3.0]])
    labels = torch.tensor([0, 2, 1, 0])
    synthetic = torch.tensor([True, True, False, True])
    loss = anchor_loss(logits, labels, synthetic)
    point_0 = -(2.0 - math.log(math.exp(2.0) + 2.0))
    point_1 = -(3.0 - math.log(1.0 + math.exp(1.0) + math.exp(3.0)))
    point_3 = -(1.0 - math.log(math.exp(1.0) + math.exp(2.0) + math.exp(3.0)))
    assert loss.item() == pytest.approx((point_0 + point_1 + point_3) / 3, rel=1e-6)


def test_scene_points_change_neither_loss_nor_synthetic_gradients():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(40, 5, generator=generator)
    labels = torch.randint(0, 5, (40,), generator=generator)
    synthetic = torch.rand(40, generator=generator) < 0.5
    perturbed = logits.clone()
    perturbed[~synthetic] += 10 * torch.randn(int((~synthetic).sum()), 5, generator=generator)
    scene_labels = labels.clone()
    scene_labels[~synthetic] = (labels[~synthetic] + 1) % 5  # scene labels are irrelevant too

    first = logits.clone().requires_grad_(True)
    second = perturbed.clone().requires_grad_(True)
    loss_first = anchor_loss(first, labels, synthetic)
    loss_second = anchor_loss(second, scene_labels, synthetic)
    loss_first.backward()
    loss_second.backward()
    assert loss_first.item() == pytest.approx(loss_second.item(), rel=1e-7)
    torch.testing.assert_close(first.grad[synthetic], second.grad[synthetic])
    assert (second.grad[~synthetic] == 0).all()


def test_ignored_synthetic_points_are_skipped():
    logits = torch.tensor([[2.0, 0.0], [0.0, 9.0]])
    with_ignored = anchor_loss(logits, torch.tensor([0, -1]), torch.tensor([True, True]))
    only_first = anchor_loss(logits[:1], torch.tensor([0]), torch.tensor([True]))
    assert with_ignored.item() == pytest.approx(only_first.item())


def test_loss_without_synthetic_points_is_zero_and_keeps_the_graph():
    classifier = _classifier()
    features = torch.randn(6, 8, requires_grad=True)
    loss = anchor_loss(classifier(features), torch.zeros(6, dtype=torch.int64), torch.zeros(6, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert classifier.anchors.grad is not None and (classifier.anchors.grad == 0).all()


def test_gradients_reach_anchors_and_input_features():
    classifier = _classifier()
    features = torch.randn(30, 8, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    labels = torch.arange(30) % 4
    synthetic = torch.arange(30) < 20
    anchor_loss(classifier(features), labels, synthetic).backward()
    assert classifier.anchors.grad.abs().sum() > 0
    assert features.grad[:20].abs().sum() > 0
    assert (features.grad[20:] == 0).all()


def test_training_the_anchors_lowers_the_loss_on_separable_features():
    generator = torch.Generator().manual_seed(5)
    classifier = _classifier(feature_dim=8, num_classes=3)
    labels = torch.randint(0, 3, (90,), generator=generator)
    centres = 3 * torch.randn(3, 8, generator=generator)
    features = centres[labels] + 0.1 * torch.randn(90, 8, generator=generator)
    synthetic = torch.ones(90, dtype=torch.bool)
    optimiser = torch.optim.SGD(classifier.parameters(), lr=0.05)
    start = anchor_loss(classifier(features), labels, synthetic).item()
    for _ in range(50):
        optimiser.zero_grad()
        loss = anchor_loss(classifier(features), labels, synthetic)
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5 * start
    assert (classifier.probabilities(features).argmax(dim=1) == labels).float().mean() > 0.95


def test_loss_is_float32_under_bfloat16_autocast():
    classifier = _classifier()
    features = torch.randn(16, 8)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = classifier(features)
        loss = anchor_loss(logits, torch.arange(16) % 4, torch.ones(16, dtype=torch.bool))
    assert logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_shape_mismatches_are_rejected():
    with pytest.raises(ValueError):
        anchor_loss(torch.zeros(4, 3), torch.zeros(5, dtype=torch.int64), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="8"):
        _classifier()(torch.zeros(3, 7))


# ---- the anchor-head factory (model.anchor_source) ---------------------------------------------

def test_learned_head_init_is_unchanged_by_the_factory_and_by_class_names():
    from cad2scan.config import load_config
    from cad2scan.model.net import RTLNet, build_anchor_head

    torch.manual_seed(11)
    direct = AnchorClassifier(8, 4)
    torch.manual_seed(11)
    built = build_anchor_head("learned", 8, 4, ["a", "b", "c", "background"])
    assert type(built) is AnchorClassifier and torch.equal(built.anchors, direct.anchors)

    cfg = load_config("demo", ["model.backbone.width_scale=0.25", "model.backbone.out_channels=16",
                               "model.hull.num_prototypes=8"])
    assert cfg.model.anchor_source == "learned"
    torch.manual_seed(0)
    unnamed = RTLNet(cfg.model, 4).state_dict()
    torch.manual_seed(0)
    named = RTLNet(cfg.model, 4, ["a", "b", "c", "background"]).state_dict()
    assert unnamed.keys() == named.keys() and all(torch.equal(unnamed[k], named[k]) for k in unnamed)


def test_anchor_head_factory_builds_a_lazy_text_head_and_rejects_unknown_sources():
    from cad2scan.model.net import build_anchor_head
    from cad2scan.model.text_anchors import TextAnchorClassifier

    head = build_anchor_head("text", 8, 3, ["chair", "table", "background"])
    assert isinstance(head, TextAnchorClassifier)
    assert head.num_classes == 3 and head.target_names == ["chair", "table"] and head.embeddings_pending
    with pytest.raises(ValueError, match="needs the class names"):
        build_anchor_head("text", 8, 3, None)
    with pytest.raises(ValueError, match="'learned' or 'text'"):
        build_anchor_head("clip", 8, 3, None)


def test_a_learned_anchor_network_cannot_take_new_classes():
    from cad2scan.config import load_config
    from cad2scan.model.net import RTLNet

    cfg = load_config("demo", ["model.backbone.width_scale=0.25", "model.backbone.out_channels=16",
                               "model.use_hull=false"])
    net = RTLNet(cfg.model, 3, ["chair", "table", "background"])
    with pytest.raises(ValueError, match="only a network with text anchors"):
        net.set_classes(["chair", "table", "sofa", "background"])
