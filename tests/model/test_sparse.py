"""Sparse conv against dense conv3d references, batch isolation, gradients, hashing limits."""

import pytest
import torch
import torch.nn.functional as F

from cad2scan.model.sparse import (
    CoordinateManager,
    SparseBatchNorm,
    SparseConv3d,
    SparseConvTranspose3d,
    SparseReLU,
    SparseTensor,
    _to_dtype,
    kernel_offsets,
    set_compute_dtype,
    sparse_cat,
    sparse_conv,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(params=["gather", "im2col"])
def conv_path(request, monkeypatch):
    """Run a test with the gather-GEMM-scatter path or the dense im2col path of sparse_conv."""
    import cad2scan.model.sparse as sparse

    monkeypatch.setattr(sparse, "IM2COL_MAX_COLUMNS", 0 if request.param == "gather" else 10**6)
    return request.param


GRID = 8  # dense reference grid edge, voxels
SHIFT = -4  # scene origin in voxel units: negative coordinates, even (a stride-2 cell boundary)


def random_scene(generator, batch=2, occupancy=0.35, shuffle=False, dtype=torch.float32, channels=3):
    """Random active voxels in a GRID^3 box per batch item; coords [b, x, y, z] start at SHIFT."""
    mask = torch.rand(batch, GRID, GRID, GRID, generator=generator) < occupancy
    idx = mask.nonzero()
    coords = idx.clone()
    coords[:, 1:] += SHIFT
    if shuffle:
        coords = coords[torch.randperm(len(coords), generator=generator)]
    feats = torch.randn(len(coords), channels, generator=generator, dtype=dtype)
    return SparseTensor(coords, feats)


def to_dense(x: SparseTensor, stride=1, batch=2):
    grid = GRID // stride
    dense = x.feats.new_zeros(batch, x.feats.shape[1], grid, grid, grid)
    c = x.coords.long()
    pos = (c[:, 1:] - SHIFT) // stride
    dense[c[:, 0], :, pos[:, 0], pos[:, 1], pos[:, 2]] = x.feats
    return dense


def at_sites(dense, coords, stride=1):
    c = coords.long()
    pos = (c[:, 1:] - SHIFT) // stride
    return dense[c[:, 0], :, pos[:, 0], pos[:, 1], pos[:, 2]]


def ours_from_dense_weight(w_dense, transposed=False):
    """(out, in, k, k, k) conv3d weight (or (in, out, k, k, k) transposed) -> (k^3, in, out)."""
    k = w_dense.shape[-1]
    if transposed:
        return w_dense.permute(2, 3, 4, 0, 1).reshape(k**3, w_dense.shape[0], w_dense.shape[1])
    return w_dense.permute(2, 3, 4, 1, 0).reshape(k**3, w_dense.shape[1], w_dense.shape[0])


@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), (3, 2), (5, 1), (1, 1)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_submanifold_conv_matches_dense_conv3d_at_active_sites(kernel_size, dilation, shuffle, conv_path):
    g = torch.Generator().manual_seed(kernel_size * 10 + dilation + shuffle)
    x = random_scene(g, shuffle=shuffle)
    conv = SparseConv3d(3, 5, kernel_size=kernel_size, dilation=dilation)
    w_dense = torch.randn(5, 3, kernel_size, kernel_size, kernel_size, generator=g)
    with torch.no_grad():
        conv.weight.copy_(ours_from_dense_weight(w_dense))
    y = conv(x)
    assert torch.equal(y.coords, x.coords) and y.stride == 1
    ref = F.conv3d(to_dense(x), w_dense, padding=dilation * (kernel_size // 2), dilation=dilation)
    torch.testing.assert_close(y.feats, at_sites(ref, x.coords), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shuffle", [False, True])
def test_stride2_kernel2_conv_matches_dense_and_floors_coordinates(shuffle, conv_path):
    g = torch.Generator().manual_seed(3)
    x = random_scene(g, shuffle=shuffle)
    conv = SparseConv3d(3, 4, kernel_size=2, stride=2)
    w_dense = torch.randn(4, 3, 2, 2, 2, generator=g)
    with torch.no_grad():
        conv.weight.copy_(ours_from_dense_weight(w_dense))
    y = conv(x)
    expected = torch.unique(torch.cat([x.coords[:, :1], torch.div(x.coords[:, 1:], 2, rounding_mode="floor") * 2], 1), dim=0)
    assert y.stride == 2
    assert torch.equal(y.coords, expected)  # unique() sorts rows lexicographically, as we do
    ref = F.conv3d(to_dense(x), w_dense, stride=2)
    torch.testing.assert_close(y.feats, at_sites(ref, y.coords, stride=2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [2, 4])
def test_strided_kernel3_conv_matches_dense_conv3d_with_padding(conv_path, stride):
    g = torch.Generator().manual_seed(4)
    x = random_scene(g)
    conv = SparseConv3d(3, 4, kernel_size=3, stride=stride)
    w_dense = torch.randn(4, 3, 3, 3, 3, generator=g)
    with torch.no_grad():
        conv.weight.copy_(ours_from_dense_weight(w_dense))
    y = conv(x)
    assert y.stride == stride and bool((y.coords[:, 1:] % stride == 0).all())
    ref = F.conv3d(to_dense(x), w_dense, stride=stride, padding=1)
    torch.testing.assert_close(y.feats, at_sites(ref, y.coords, stride=stride), rtol=1e-5, atol=1e-5)


def test_second_downsampling_uses_stride2_coordinates():
    g = torch.Generator().manual_seed(5)
    x = random_scene(g)
    down1, down2 = SparseConv3d(3, 3, 2, 2), SparseConv3d(3, 2, 2, 2)
    w2 = torch.randn(2, 3, 2, 2, 2, generator=g)
    with torch.no_grad():
        down2.weight.copy_(ours_from_dense_weight(w2))
    mid = down1(x)
    y = down2(mid)
    assert y.stride == 4 and bool((y.coords[:, 1:] % 4 == 0).all())
    ref = F.conv3d(to_dense(mid, stride=2), w2, stride=2)
    torch.testing.assert_close(y.feats, at_sites(ref, y.coords, stride=4), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shuffle", [False, True])
def test_transposed_conv_matches_dense_and_returns_to_encoder_coordinates(shuffle, conv_path):
    g = torch.Generator().manual_seed(6)
    x = random_scene(g, shuffle=shuffle)
    coarse = SparseConv3d(3, 3, 2, 2)(x)
    up = SparseConvTranspose3d(3, 4, kernel_size=2, stride=2)
    w_dense = torch.randn(3, 4, 2, 2, 2, generator=g)
    with torch.no_grad():
        up.weight.copy_(ours_from_dense_weight(w_dense, transposed=True))
    y = up(coarse)
    assert y.stride == 1 and y.coords is x.coords  # same coordinates, same order
    ref = F.conv_transpose3d(to_dense(coarse, stride=2), w_dense, stride=2)
    torch.testing.assert_close(y.feats, at_sites(ref, x.coords), rtol=1e-5, atol=1e-5)


def test_batch_items_do_not_leak_into_each_other(conv_path):
    g = torch.Generator().manual_seed(7)
    x = random_scene(g, batch=2, occupancy=0.5)
    convs = [SparseConv3d(3, 4, 3), SparseConv3d(4, 4, 2, 2), SparseConv3d(4, 4, 3), SparseConvTranspose3d(4, 2)]

    def run(t):
        for c in convs:
            t = c(t)
        return t.feats

    both = run(x)
    for b in range(2):
        sel = x.coords[:, 0] == b
        alone = SparseTensor(torch.cat([torch.zeros_like(x.coords[sel, :1]), x.coords[sel, 1:]], 1), x.feats[sel])
        torch.testing.assert_close(both[sel], run(alone), rtol=1e-5, atol=1e-5)


def test_shuffled_input_gives_permuted_output():
    g = torch.Generator().manual_seed(8)
    x = random_scene(g)
    perm = torch.randperm(len(x), generator=g)
    convs = [SparseConv3d(3, 4, 3), SparseConv3d(4, 4, 2, 2), SparseConv3d(4, 4, 3), SparseConvTranspose3d(4, 2)]
    a, b = x, SparseTensor(x.coords[perm], x.feats[perm])
    for c in convs:
        a, b = c(a), c(b)
    torch.testing.assert_close(a.feats[perm], b.feats, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("module", ["submanifold", "down", "down3", "up"])
def test_gradients_match_finite_differences(module, conv_path):
    g = torch.Generator().manual_seed(9)
    x = random_scene(g, occupancy=0.3, dtype=torch.float64, channels=2)
    x = SparseTensor(x.coords[x.coords[:, 1:].max(1).values < 0], x.feats[x.coords[:, 1:].max(1).values < 0])
    if module == "up":
        x = SparseConv3d(2, 2, 2, 2).double()(x)
        x = x.replace_feats(x.feats.detach())
    make = {
        "submanifold": lambda: x.manager.kernel_map(1, 1, 3, 1),
        "down": lambda: x.manager.kernel_map(1, 2, 2, 1),
        "down3": lambda: x.manager.kernel_map(1, 2, 3, 1),
        "up": lambda: x.manager.kernel_map(2, 1, 2, 1),
    }
    kmap = make[module]()
    k = 27 if module in ("submanifold", "down3") else 8
    feats = x.feats.clone().requires_grad_(True)
    weight = torch.randn(k, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w: sparse_conv(f, w, kmap), (feats, weight))


@pytest.mark.parametrize("padded", [False, True])
def test_chunked_and_padded_gathers_give_the_same_result_as_one_chunk(monkeypatch, padded):
    import cad2scan.model.sparse as sparse

    monkeypatch.setattr(sparse, "IM2COL_MAX_COLUMNS", 0)
    g = torch.Generator().manual_seed(10)
    x = random_scene(g, occupancy=0.5)
    x.feats.requires_grad_(True)
    convs = [SparseConv3d(3, 4, 3), SparseConv3d(3, 5, 2, 2)]

    def run():
        outs = [c(x).feats for c in convs]
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)
        grads = torch.autograd.grad(loss, [x.feats] + [c.weight for c in convs])
        return outs, grads

    ref_out, ref_grads = run()
    monkeypatch.setattr(sparse, "CHUNK_ELEMENTS", 13)  # 64-row chunks: offsets split over chunks
    monkeypatch.setattr(sparse, "_pad_shapes", lambda dtype: padded)
    x = SparseTensor(x.coords, x.feats.detach().requires_grad_(True))  # fresh manager, fresh plans
    out, grads = run()
    for a, b in zip(out + list(grads), ref_out + list(ref_grads)):
        torch.testing.assert_close(a, b)


def test_padded_plan_rounds_pieces_to_few_sizes():
    from cad2scan.model.sparse import _bucket, _plan

    assert [_bucket(n) for n in (1, 64, 65, 1000, 1025, 5000)] == [64, 64, 128, 1024, 1088, 5120]
    g = torch.Generator().manual_seed(18)
    x = random_scene(g, occupancy=0.5)
    kmap = x.manager.kernel_map(1, 1, 3, 1)
    plan = _plan(kmap, 256, pad=True)
    lengths = [b - a for _, _, parts in plan.chunks for _, a, b in parts]
    assert all(n in (64, 256) or n == _bucket(n) for n in lengths)
    assert sum(lengths) == len(plan.in_idx) >= sum(kmap.counts)
    real = plan.in_idx < kmap.num_in
    assert int(real.sum()) == sum(kmap.counts)
    assert bool((plan.out_idx[~real] == kmap.num_out).all())


@pytest.mark.parametrize("shuffle", [False, True])
def test_dense_grid_and_sorted_key_lookups_give_the_same_maps(monkeypatch, shuffle):
    import cad2scan.model.sparse as sparse

    g = torch.Generator().manual_seed(17)
    x = random_scene(g, shuffle=shuffle)
    x = SparseTensor(x.coords + torch.tensor([0, 3, 3, 3]), x.feats)  # box starts at -1: coarse cells start below it
    assert x.coords[:, 1:].min().item() == -1
    keys = [(1, 1, 3, 1), (1, 1, 5, 1), (1, 1, 3, 2), (1, 2, 2, 1), (1, 2, 3, 1), (2, 2, 3, 1), (2, 4, 2, 1), (1, 4, 3, 1), (1, 8, 3, 1)]

    def pair_sets(manager):
        out = []
        for key in keys:
            m = manager.kernel_map(*key)
            per_pair = torch.repeat_interleave(torch.tensor(m.offsets), torch.tensor(m.counts))
            out.append(sorted(zip(per_pair.tolist(), m.in_idx.tolist(), m.out_idx.tolist())))
        return out

    dense_manager = CoordinateManager(x.coords)
    dense = pair_sets(dense_manager)
    assert all(v is not None for v in dense_manager._grids.values())
    monkeypatch.setattr(sparse, "GRID_MIN_CELLS", 0)
    monkeypatch.setattr(sparse, "GRID_CELLS_PER_VOXEL", 0)
    sorted_manager = CoordinateManager(x.coords)
    searched = pair_sets(sorted_manager)
    assert all(v is None for v in sorted_manager._grids.values())
    assert dense == searched
    assert all(len(p) > 0 for p in dense)


def test_kernel_maps_are_cached_per_stride_and_kernel():
    g = torch.Generator().manual_seed(11)
    x = random_scene(g)
    m = x.manager
    assert m.kernel_map(1, 1, 3, 1) is m.kernel_map(1, 1, 3, 1)
    down = m.kernel_map(1, 2, 2, 1)
    up = m.kernel_map(2, 1, 2, 1)
    assert up.in_idx is down.out_idx and up.out_idx is down.in_idx
    # every fine voxel belongs to exactly one coarse cell
    assert sorted(down.in_idx.tolist()) == list(range(len(x)))


def test_submanifold_map_pairs_are_true_neighbours():
    g = torch.Generator().manual_seed(12)
    x = random_scene(g)
    kmap = x.manager.kernel_map(1, 1, 3, 1)
    offsets = torch.tensor(kernel_offsets(3))
    per_pair = torch.repeat_interleave(torch.tensor(kmap.offsets), torch.tensor(kmap.counts))
    c = x.coords.long()
    assert torch.equal(c[kmap.in_idx, 1:] - c[kmap.out_idx, 1:], offsets[per_pair])
    assert torch.equal(c[kmap.in_idx, 0], c[kmap.out_idx, 0])
    # count of neighbour pairs equals a brute-force count
    diff = (c[:, None, 1:] - c[None, :, 1:]).abs().max(-1).values
    same_batch = c[:, None, 0] == c[None, :, 0]
    brute = int(((diff <= 1) & (diff > 0) & same_batch).sum())
    assert sum(kmap.counts) == brute


def test_batchnorm_relu_and_cat_keep_coordinates():
    g = torch.Generator().manual_seed(13)
    x = random_scene(g)
    y = SparseReLU()(SparseBatchNorm(3)(x))
    assert y.coords is x.coords and y.manager is x.manager
    assert bool((y.feats >= 0).all())
    z = sparse_cat(x, y)
    assert z.feats.shape == (len(x), 6)
    with pytest.raises(ValueError):
        sparse_cat(x, SparseConv3d(3, 3, 2, 2)(x))


def test_coordinate_hash_rejects_out_of_range_inputs():
    ok = torch.tensor([[0, -(2**20), 5, 2**20], [1023, 2**20, 5, 2**20]])
    with pytest.raises(ValueError, match="spans"):
        CoordinateManager(ok)  # 2^21 voxels along x: too wide
    far = torch.tensor([[0, 2**40, -(2**40), 7], [0, 2**40 + 5, -(2**40), 9]])
    CoordinateManager(far)  # far from the origin but small: fine
    with pytest.raises(ValueError, match="batch"):
        CoordinateManager(torch.tensor([[1024, 0, 0, 0]]))
    with pytest.raises(ValueError, match="duplicate"):
        SparseTensor(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]), torch.ones(2, 1)).manager.kernel_map(1, 1, 3, 1)
    with pytest.raises(ValueError, match="at least one"):
        SparseTensor(torch.zeros(0, 4, dtype=torch.long), torch.ones(0, 1))


def test_large_extent_scene_hashes_and_convolves():
    coords = torch.tensor([[0, -100000, 0, 0], [0, -99999, 0, 0], [1, 100000, 50000, -60000], [1, 100000, 50000, -59999]])
    x = SparseTensor(coords, torch.ones(4, 1))
    conv = SparseConv3d(1, 1, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    assert conv(x).feats.squeeze(1).tolist() == [2.0, 2.0, 2.0, 2.0]


def test_bfloat16_bit_conversion_matches_torch_rounding():
    g = torch.Generator().manual_seed(15)
    x = torch.cat([torch.randn(1000, generator=g) * 10.0 ** torch.randint(-30, 30, (1000,), generator=g),
                   torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 3.3895e38, 1e-40])])
    assert torch.equal(_to_dtype(x, torch.bfloat16).view(torch.int16), x.to(torch.bfloat16).view(torch.int16))
    b = x.to(torch.bfloat16)
    assert torch.equal(_to_dtype(b, torch.float32), b.to(torch.float32))
    assert torch.isnan(_to_dtype(torch.tensor([float("nan")]), torch.bfloat16).float()).all()


def test_bfloat16_compute_stays_close_to_float32_and_returns_float32(conv_path):
    g = torch.Generator().manual_seed(16)
    x = random_scene(g, occupancy=0.5, channels=16)
    net = torch.nn.ModuleList([SparseConv3d(16, 32, 3), SparseConv3d(32, 32, 2, 2), SparseConvTranspose3d(32, 8)])

    def run():
        feats = x.feats.clone().requires_grad_(True)
        t = x.replace_feats(feats)
        for m in net:
            t = m(t)
        t.feats.square().sum().backward()
        grads = [feats.grad] + [m.weight.grad.clone() for m in net]
        net.zero_grad()
        return t.feats.detach(), grads

    ref, ref_grads = run()
    set_compute_dtype(net, torch.bfloat16)
    out, grads = run()
    assert out.dtype == torch.float32 and all(gr.dtype == torch.float32 for gr in grads)
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05 * ref.abs().max().item())
    for a, b in zip(grads, ref_grads):
        assert (a - b).norm() < 0.03 * b.norm()
    assert not torch.equal(out, ref)  # bf16 really was used


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(14)
    x = random_scene(g)
    convs = torch.nn.ModuleList([SparseConv3d(3, 4, 3), SparseConv3d(4, 4, 2, 2), SparseConvTranspose3d(4, 2)])
    x.feats.requires_grad_(True)
    a = x
    for c in convs:
        a = c(a)
    xc = SparseTensor(x.coords.cuda(), x.feats.detach().cuda().requires_grad_(True))
    convs.cuda()
    b = xc
    for c in convs:
        b = c(b)
    torch.testing.assert_close(a.feats, b.feats.cpu(), rtol=1e-4, atol=1e-5)
    (ga,) = torch.autograd.grad(a.feats.sum(), x.feats)
    (gb,) = torch.autograd.grad(b.feats.sum(), xc.feats)
    torch.testing.assert_close(ga, gb.cpu(), rtol=1e-4, atol=1e-5)
