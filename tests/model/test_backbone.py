"""MinkUNet14: shapes and order, batching, invariances, gradients, parameter count."""

import numpy as np
import pytest
import torch

from cad2scan.errors import ConfigError
from cad2scan.model.backbone import BackboneConfig, MinkUNet14, build_backbone, make_sparse_input

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


def scene(rng, n=600, extent=40):
    """Unique voxel coords on a noisy sphere-ish shell (a surface, like a scan)."""
    d = rng.normal(size=(n * 3, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts = np.floor(d * extent / 2 * rng.uniform(0.9, 1.0, size=(len(d), 1))).astype(np.int64)
    return np.unique(pts, axis=0)[:n]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MinkUNet14(in_channels=1, out_channels=16, width_scale=0.25).eval()


def test_output_has_out_channels_on_the_input_coordinates_in_order(model):
    rng = np.random.default_rng(0)
    coords = scene(rng)
    perm = rng.permutation(len(coords))
    x = make_sparse_input([coords[perm]], None, "cpu")
    with torch.no_grad():
        y = model(x)
    assert y.stride == 1 and y.coords is x.coords
    assert y.feats.shape == (len(coords), 16)
    # the same voxels in another order give the same per-voxel outputs
    with torch.no_grad():
        y_sorted = model(make_sparse_input([coords], None, "cpu"))
    inverse = np.argsort(perm)
    torch.testing.assert_close(y.feats[torch.as_tensor(inverse)], y_sorted.feats, rtol=1e-4, atol=1e-5)


def test_batch_items_are_independent_in_eval_mode(model):
    rng = np.random.default_rng(1)
    a, b = scene(rng, 500), scene(rng, 300) + 3  # different sizes, overlapping coordinates
    with torch.no_grad():
        both = model(make_sparse_input([a, b], None, "cpu"))
        alone_a = model(make_sparse_input([a], None, "cpu"))
        alone_b = model(make_sparse_input([torch.as_tensor(b)], None, "cpu"))
    assert both.feats.shape == (len(a) + len(b), 16)
    assert both.coords[:, 0].tolist() == [0] * len(a) + [1] * len(b)
    torch.testing.assert_close(both.feats[: len(a)], alone_a.feats, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(both.feats[len(a) :], alone_b.feats, rtol=1e-4, atol=1e-5)


def test_translation_by_multiples_of_16_voxels_leaves_outputs_unchanged(model):
    rng = np.random.default_rng(2)
    coords = scene(rng)
    with torch.no_grad():
        y0 = model(make_sparse_input([coords], None, "cpu")).feats
        y1 = model(make_sparse_input([coords + np.array([16, -32, 48])], None, "cpu")).feats
        y2 = model(make_sparse_input([coords + np.array([8, 0, 0])], None, "cpu")).feats
    torch.testing.assert_close(y0, y1, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(y0, y2, atol=1e-3)  # 8 voxels changes the stride-16 cells


def test_gradients_reach_every_parameter():
    torch.manual_seed(1)
    net = MinkUNet14(in_channels=1, out_channels=8, width_scale=0.25).train()
    x = make_sparse_input([scene(np.random.default_rng(3), 400), scene(np.random.default_rng(4), 200)], None, "cpu")
    y = net(x)
    (y.feats * torch.randn_like(y.feats)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def _expected_parameter_count(cin, cout, init=32, planes=(32, 64, 128, 256, 256, 128, 96, 96)):
    def conv(k, a, b):
        return k**3 * a * b

    def bn(c):
        return 2 * c

    def block(a, c):
        n = conv(3, a, c) + bn(c) + conv(3, c, c) + bn(c)
        return n + (conv(1, a, c) + bn(c) if a != c else 0)

    total = conv(5, cin, init) + bn(init)
    width, skips = init, [init]
    for i in range(4):
        total += conv(2, width, width) + bn(width) + block(width, planes[i])
        width = planes[i]
        skips.append(width)
    for i in range(4):
        c = planes[4 + i]
        total += conv(2, width, c) + bn(c) + block(c + skips[3 - i], c)
        width = c
    return total + conv(1, width, cout) + cout


def test_parameter_count_matches_the_minkunet14_layout():
    net = MinkUNet14(in_channels=1, out_channels=96)
    n = sum(p.numel() for p in net.parameters())
    assert n == _expected_parameter_count(1, 96)
    assert 11_000_000 < n < 12_000_000  # about 11.6M for this layout with D=96
    half = MinkUNet14(in_channels=1, out_channels=96, width_scale=0.5)
    assert sum(p.numel() for p in half.parameters()) < n / 3
    assert half.final.out_channels == 96 and half.final.in_channels == 48


def test_build_backbone_factory():
    net = build_backbone(BackboneConfig(out_channels=24, width_scale=0.25))
    assert isinstance(net, MinkUNet14) and net.final.out_channels == 24
    with pytest.raises(ConfigError, match="unknown backbone"):
        build_backbone(BackboneConfig(name="pointnet"))
    with pytest.raises(ConfigError, match="compute_dtype"):
        build_backbone(BackboneConfig(compute_dtype="float8"))
    bf = build_backbone(BackboneConfig(width_scale=0.25, compute_dtype="bfloat16"))
    assert bf.final.compute_dtype == torch.bfloat16 and bf.stem[0].compute_dtype == torch.bfloat16


def test_bfloat16_backbone_tracks_float32_backbone():
    torch.manual_seed(2)
    net = MinkUNet14(in_channels=1, out_channels=16, width_scale=0.25).eval()
    x = make_sparse_input([scene(np.random.default_rng(5), 500)], None, "cpu")
    with torch.no_grad():
        ref = net(x).feats
        from cad2scan.model.sparse import set_compute_dtype

        set_compute_dtype(net, torch.bfloat16)
        out = net(x).feats
    assert out.dtype == torch.float32
    assert (out - ref).norm() < 0.05 * ref.norm()


def test_make_sparse_input_prepends_batch_and_uses_given_features():
    x = make_sparse_input([np.array([[0, 0, 0], [1, 2, 3]]), torch.tensor([[-5, 4, 2]])], None, "cpu")
    assert x.coords.tolist() == [[0, 0, 0, 0], [0, 1, 2, 3], [1, -5, 4, 2]]
    assert x.feats.tolist() == [[1.0], [1.0], [1.0]] and x.feats.dtype == torch.float32
    x = make_sparse_input([np.zeros((2, 3), int) + [[0, 0, 0], [0, 0, 1]]], [np.ones((2, 4))], "cpu")
    assert x.feats.shape == (2, 4)
    with pytest.raises(ValueError):
        make_sparse_input([np.zeros((2, 3), int)], [np.ones((3, 4))], "cpu")
