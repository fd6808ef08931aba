"""Sparse 3D convolution in plain PyTorch: hashed coordinates, kernel maps, gather-GEMM-scatter.

Backend note: this is the ONE module to swap for spconv / torchsparse / MinkowskiEngine.
Everything else in cad2scan sees only ``SparseTensor``, ``SparseConv3d``,
``SparseConvTranspose3d``, ``SparseBatchNorm``, ``SparseReLU`` and ``sparse_cat``. The
implementation uses torch ops only (no numpy, no custom kernels), so the same code runs on
CPU and CUDA; on CUDA ``index_add_`` uses atomics, so results there are reproducible only up
to float rounding (about 1e-6 relative); on CPU they repeat exactly for a fixed thread count.

Conventions
- ``coords``: (N, 4) int tensor ``[batch, x, y, z]`` in units of the finest (stride-1)
  voxel grid. A tensor at stride ``s`` has x, y, z that are multiples of ``s``; the
  coordinates of every stride > 1 are sorted by (b, x, y, z), stride 1 keeps the input order.
- Kernel offsets are enumerated x-major: offset index ``k = (ix * K + iy) * K + iz`` with
  ``i* in range(K)``; an odd kernel covers ``(i - K // 2) * stride * dilation`` around the
  output, an even kernel (downsampling, K = 2) covers ``i * stride`` from the output,
  which sits at the cell origin ``floor(coord / (2 s)) * 2 s``. The weight of a conv is
  ``(K**3, in_channels, out_channels)``; ``weight[k]`` equals the dense
  ``conv3d`` weight ``w[:, :, ix, iy, iz].T`` (cross-correlation, like ``F.conv3d``).
- Coordinates are hashed into one int64 key: 10 bits batch (< 1024 scenes), 18 bits x,
  18 bits y, 17 bits z, relative to a per-manager origin, so a scene may span up to
  ``2**17 - 3 * 4096`` voxels along z and ``2**18 - 3 * 4096`` along x and y (5.9 km /
  12 km at 5 cm); absolute coordinates only need to fit in int64. Keys sort as (b, x, y, z).
- Neighbour lookups use a dense int32 row-index grid over the bounding box when it has at
  most ``max(GRID_MIN_CELLS, GRID_CELLS_PER_VOXEL * N)`` cells (always, for rooms), else
  sorted keys + ``torch.searchsorted`` (the queries of one offset are sorted too: key +
  constant, which keeps the binary searches cache friendly).

Speed notes (2 CPU cores): the pair lists of a conv are grouped by kernel offset; a
submanifold conv's centre offset is one dense matmul; the other offsets are processed in
chunks of at most ``CHUNK_ELEMENTS`` floats: one ``index_select`` for the whole chunk, one
``mm`` per offset into a slice of one buffer, one ``index_add_``. Small chunks matter on
glibc: blocks above the mmap threshold are page-faulted afresh on every call. Submanifold
maps are built for half the offsets only (the map of ``-d`` is the map of ``d`` with input
and output swapped). The backward is hand-written: it saves only the input features and
the weight, never a gathered buffer. ``set_compute_dtype(model, torch.bfloat16)`` runs the
gathers and matmuls in bfloat16 (accumulating in float32), for CPUs with AVX512-BF16/AMX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

BATCH_BITS = 10
AXIS_BITS = (18, 18, 17)
MARGIN = 4096  # voxels kept free around the scene in key space; largest kernel reach
_SHIFTS = (53, 35, 17, 0)  # bit position of batch, x, y, z inside a key
GRID_PAD = 2  # empty cells around a dense lookup grid: kernel reach it serves
GRID_MIN_CELLS = 1 << 22  # a dense grid of up to this many cells is always fine (16 MB)
GRID_CELLS_PER_VOXEL = 64  # ... and of up to this many cells per voxel; else searchsorted
GRID_MAX_CELLS = 1 << 27  # never more than this (512 MB of int32)
IM2COL_MAX_COLUMNS = 128  # convs with C_in * K**3 up to this use one dense im2col GEMM
CHUNK_ELEMENTS = 1 << 20  # floats per gather buffer (4 MB in float32)


def kernel_offsets(kernel_size: int) -> list[tuple[int, int, int]]:
    """Kernel offsets in weight order, in units of (stride * dilation); (K**3) triples."""
    if kernel_size % 2 == 1:
        r = range(-(kernel_size // 2), kernel_size // 2 + 1)
    else:
        r = range(kernel_size)
    return [(dx, dy, dz) for dx in r for dy in r for dz in r]


@dataclass
class KernelMap:
    """Input/output pairs of a sparse conv, grouped by kernel offset.

    in_idx, out_idx: (P,) int64 rows of the input / output features; pairs of segment i
        occupy ``[sum(counts[:i]), sum(counts[:i+1]))`` and use weight offset ``offsets[i]``.
    centre: weight offset whose map is the identity (submanifold conv), not stored in the
        pair lists, or None.
    """

    in_idx: torch.Tensor
    out_idx: torch.Tensor
    offsets: list[int]
    counts: list[int]
    num_in: int
    num_out: int
    centre: int | None = None
    _pair_offsets: torch.Tensor | None = field(default=None, repr=False)
    _plans: dict = field(default_factory=dict, repr=False)

    def transposed(self) -> "KernelMap":
        """The map of the transposed conv: same pairs and offsets, input and output swapped."""
        return KernelMap(
            self.out_idx, self.in_idx, self.offsets, self.counts, self.num_out, self.num_in, self.centre
        )

    def pair_offsets(self) -> torch.Tensor:
        """(P,) int64 weight offset of every pair."""
        if self._pair_offsets is None:
            device = self.in_idx.device
            self._pair_offsets = torch.repeat_interleave(
                torch.tensor(self.offsets, dtype=torch.long, device=device),
                torch.tensor(self.counts, dtype=torch.long, device=device),
            )
        return self._pair_offsets


@dataclass(eq=False)
class _Table:
    keys: torch.Tensor  # (M,) int64, sorted
    perm: torch.Tensor | None  # (M,) int64: row of sorted key i; None when rows are sorted


class CoordinateManager:
    """Memoises, for one batch of scenes, the coordinates and hash table of every stride and
    the kernel maps, so each map is computed once per forward and the decoder reuses the
    encoder's downsampling maps (transposed) and lands exactly on the encoder's coordinates.

    coords: (N, 4) int tensor [batch, x, y, z] at stride 1, unique rows.
    """

    def __init__(self, coords: torch.Tensor):
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(f"coords must have shape (N, 4) [batch, x, y, z], got {tuple(coords.shape)}")
        if coords.shape[0] == 0:
            raise ValueError("a sparse tensor needs at least one voxel")
        if coords.dtype.is_floating_point or coords.dtype == torch.bool:
            raise ValueError(f"coords must be an integer tensor, got {coords.dtype}")
        coords = coords.long()
        lo = coords.min(0).values.tolist()
        hi = coords.max(0).values.tolist()
        if lo[0] < 0 or hi[0] >= 1 << BATCH_BITS:
            raise ValueError(f"batch indices must lie in [0, {1 << BATCH_BITS}), got [{lo[0]}, {hi[0]}]")
        origin = []
        for axis, bits in enumerate(AXIS_BITS):
            o = (lo[axis + 1] // MARGIN) * MARGIN - MARGIN
            if hi[axis + 1] - o + MARGIN >= 1 << bits:
                raise ValueError(
                    f"the scene spans {hi[axis + 1] - lo[axis + 1] + 1} voxels along {'xyz'[axis]}; "
                    f"at most {(1 << bits) - 3 * MARGIN} are supported (use larger voxels or crop)"
                )
            origin.append(o)
        self.device = coords.device
        self._origin = origin
        self._coords: dict[int, torch.Tensor] = {1: coords}
        self._tables: dict[int, _Table] = {}
        self._maps: dict[tuple[int, int, int, int], KernelMap] = {}
        self._grids: dict[int, _Grid | None] = {}

    # ----------------------------------------------------------------- keys
    def _pack(self, coords: torch.Tensor) -> torch.Tensor:
        """(N, 4) int64 [b, x, y, z] -> (N,) int64 keys, ordered like (b, x, y, z)."""
        key = coords[:, 0] << _SHIFTS[0]
        for axis in range(3):
            key = key | ((coords[:, axis + 1] - self._origin[axis]) << _SHIFTS[axis + 1])
        return key

    def _unpack(self, keys: torch.Tensor) -> torch.Tensor:
        cols = [keys >> _SHIFTS[0]]
        for axis, bits in enumerate(AXIS_BITS):
            cols.append(((keys >> _SHIFTS[axis + 1]) & ((1 << bits) - 1)) + self._origin[axis])
        return torch.stack(cols, dim=1)

    @staticmethod
    def _delta(offset: tuple[int, int, int], step: int) -> int:
        """Key increment of a coordinate offset (valid because of the MARGIN)."""
        return sum((d * step) << s for d, s in zip(offset, _SHIFTS[1:]))

    # ----------------------------------------------------------- coordinates
    def coords_at(self, stride: int) -> torch.Tensor:
        """(M, 4) int64 coordinates at ``stride``: unique(floor(c / stride) * stride) per batch,
        sorted by (b, x, y, z); stride 1 gives the input coordinates in the input order."""
        if stride in self._coords:
            return self._coords[stride]
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"strides must be powers of two, got {stride}")
        src_stride = max(s for s in self._coords if stride % s == 0)
        src = self._coords[src_stride]
        cells = torch.cat([src[:, :1], torch.div(src[:, 1:], stride, rounding_mode="floor") * stride], 1)
        keys = torch.unique(self._pack(cells), sorted=True)
        self._tables[stride] = _Table(keys, None)
        self._coords[stride] = self._unpack(keys)
        return self._coords[stride]

    def _table(self, stride: int) -> _Table:
        if stride not in self._tables:
            keys = self._pack(self.coords_at(stride))
            sorted_keys, perm = torch.sort(keys)
            if sorted_keys.numel() > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
                raise ValueError("sparse tensor coordinates contain duplicate [batch, x, y, z] rows")
            is_sorted = bool((perm == torch.arange(perm.numel(), device=perm.device)).all())
            self._tables[stride] = _Table(sorted_keys, None if is_sorted else perm)
        return self._tables[stride]

    # ------------------------------------------------------------ kernel maps
    def kernel_map(self, in_stride: int, out_stride: int, kernel_size: int, dilation: int = 1) -> KernelMap:
        """Pairs of the conv from coordinates at ``in_stride`` to those at ``out_stride``.

        in == out stride: submanifold conv (odd kernel); out > in: strided conv (output at
        the coarse coordinates); out < in: transposed conv (the strided map, swapped)."""
        key = (in_stride, out_stride, kernel_size, dilation)
        if key not in self._maps:
            if out_stride < in_stride:
                kmap = self.kernel_map(out_stride, in_stride, kernel_size, dilation).transposed()
            elif out_stride == in_stride:
                kmap = self._submanifold_map(in_stride, kernel_size, dilation)
            else:
                kmap = self._strided_map(in_stride, out_stride, kernel_size, dilation)
            self._maps[key] = kmap
        return self._maps[key]

    def _check_reach(self, kernel_size: int, step: int) -> None:
        if kernel_size * step >= MARGIN:
            raise ValueError(f"kernel reach {kernel_size * step} voxels exceeds the supported {MARGIN}")

    def _grid(self, stride: int) -> "_Grid | None":
        """A dense index grid over the bounding box at ``stride``, or None when too large."""
        if stride not in self._grids:
            coords = self.coords_at(stride)
            lo = coords.min(0).values.tolist()
            hi = coords.max(0).values.tolist()
            dims = [(h - l) // stride + 1 + 2 * GRID_PAD for l, h in zip(lo[1:], hi[1:])]
            volume = (hi[0] + 1) * dims[0] * dims[1] * dims[2]
            grid = None
            if volume <= min(GRID_MAX_CELLS, max(GRID_MIN_CELLS, GRID_CELLS_PER_VOXEL * coords.shape[0])):
                grid = _Grid(stride, lo[1:], dims)
                lin = grid.linear(coords)
                grid.cells = torch.full((volume,), -1, dtype=torch.int32, device=self.device)
                rows = torch.arange(coords.shape[0], dtype=torch.int32, device=self.device)
                grid.cells[lin] = rows
                if stride == 1 and bool((grid.cells[lin] != rows).any()):
                    raise ValueError("sparse tensor coordinates contain duplicate [batch, x, y, z] rows")
            self._grids[stride] = grid
        return self._grids[stride]

    def _pairs(self, in_stride: int, out_stride: int, offsets: list[tuple[int, int, int]], dilation: int):
        """For each offset d (units of in_stride * dilation), the pairs (input row i, output
        row o) with coords_in[i] == coords_out[o] + d * in_stride * dilation.

        Returns (counts per offset, in_idx (P,), out_idx (P,)), pairs grouped by offset."""
        # Cells a query may leave the bounding box by: below (coarse outputs floor up to
        # ratio - 1 cells below the box, plus negative offsets) and above.
        below = out_stride // in_stride - 1 + max(0, -min(min(o) for o in offsets)) * dilation
        above = max(0, max(max(o) for o in offsets)) * dilation
        grid = self._grid(in_stride) if max(below, above) <= GRID_PAD else None
        if grid is not None:
            deltas = torch.tensor([grid.delta(o, dilation) for o in offsets], device=self.device)
            queries = grid.linear(self.coords_at(out_stride)).unsqueeze(0) + deltas.unsqueeze(1)
            rows = grid.cells[queries]
            found = rows >= 0
            counts = found.sum(1).tolist()
            row, col = found.nonzero(as_tuple=True)
            return counts, rows[row, col].long(), col
        # Sorted keys + searchsorted: the queries of one offset are sorted too (key + const).
        in_table, out_table = self._table(in_stride), self._table(out_stride)
        step = in_stride * dilation
        deltas = torch.tensor([self._delta(o, step) for o in offsets], device=self.device)
        queries = out_table.keys.unsqueeze(0) + deltas.unsqueeze(1)
        pos = torch.searchsorted(in_table.keys, queries)
        pos.clamp_(max=in_table.keys.numel() - 1)
        found = in_table.keys[pos] == queries
        counts = found.sum(1).tolist()
        row, col = found.nonzero(as_tuple=True)
        src = pos[row, col]
        if in_table.perm is not None:
            src = in_table.perm[src]
        if out_table.perm is not None:
            col = out_table.perm[col]
        return counts, src, col

    def _submanifold_map(self, stride: int, kernel_size: int, dilation: int) -> KernelMap:
        if kernel_size % 2 == 0:
            raise ValueError(f"a stride-1 (submanifold) conv needs an odd kernel, got {kernel_size}")
        self._check_reach(kernel_size, stride * dilation)
        n = self.coords_at(stride).shape[0]
        offsets = kernel_offsets(kernel_size)
        centre = len(offsets) // 2
        half = list(range(centre))  # offset k and len-1-k are negatives of each other
        if not half:
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            return KernelMap(empty, empty, [], [], n, n, centre)
        counts, src, dst = self._pairs(stride, stride, [offsets[k] for k in half], dilation)
        keep = [i for i, c in enumerate(counts) if c > 0]
        return KernelMap(
            in_idx=torch.cat([src, dst]),
            out_idx=torch.cat([dst, src]),
            offsets=[half[i] for i in keep] + [len(offsets) - 1 - half[i] for i in keep],
            counts=[counts[i] for i in keep] * 2,
            num_in=n,
            num_out=n,
            centre=centre,
        )

    def _strided_map(self, in_stride: int, out_stride: int, kernel_size: int, dilation: int) -> KernelMap:
        if out_stride % in_stride:
            raise ValueError(f"output stride {out_stride} is not a multiple of input stride {in_stride}")
        self._check_reach(kernel_size, in_stride * dilation)
        offsets = kernel_offsets(kernel_size)
        counts, src, dst = self._pairs(in_stride, out_stride, offsets, dilation)
        keep = [i for i, c in enumerate(counts) if c > 0]
        return KernelMap(
            in_idx=src,
            out_idx=dst,
            offsets=keep,
            counts=[counts[i] for i in keep],
            num_in=self.coords_at(in_stride).shape[0],
            num_out=self.coords_at(out_stride).shape[0],
        )


class _Grid:
    """Dense row-index grid of one stride: cell (b, x, y, z) holds the row or -1, with
    GRID_PAD empty cells around the bounding box so that neighbour queries stay inside."""

    def __init__(self, stride: int, lo: list[int], dims: list[int]):
        self.stride, self.lo, self.dims = stride, lo, dims
        self.cells: torch.Tensor | None = None

    def linear(self, coords: torch.Tensor) -> torch.Tensor:
        """(M, 4) coords (multiples of the stride) -> (M,) int64 cell index."""
        dx, dy, dz = self.dims
        cell = [torch.div(coords[:, a + 1] - self.lo[a], self.stride, rounding_mode="floor") + GRID_PAD for a in range(3)]
        return ((coords[:, 0] * dx + cell[0]) * dy + cell[1]) * dz + cell[2]

    def delta(self, offset: tuple[int, int, int], dilation: int) -> int:
        _, dy, dz = self.dims
        return ((offset[0] * dy + offset[1]) * dz + offset[2]) * dilation


@dataclass(eq=False)
class SparseTensor:
    """Features on a sparse set of voxels.

    coords: (N, 4) int32/int64 [batch, x, y, z], stride-1 voxel units, multiples of ``stride``.
    feats: (N, C) float.
    stride: 1, 2, 4, 8, 16, ...
    manager: the CoordinateManager shared by every tensor derived from the same input;
        created from ``coords`` when omitted (only at stride 1).
    """

    coords: torch.Tensor
    feats: torch.Tensor
    stride: int = 1
    manager: CoordinateManager | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.feats.dim() != 2 or self.feats.shape[0] != self.coords.shape[0]:
            raise ValueError(
                f"feats must be (N, C) with N = {self.coords.shape[0]} rows, got {tuple(self.feats.shape)}"
            )
        if self.manager is None:
            if self.stride != 1:
                raise ValueError("a SparseTensor without a manager must be at stride 1")
            self.manager = CoordinateManager(self.coords)

    def replace_feats(self, feats: torch.Tensor) -> "SparseTensor":
        """Same coordinates, stride and manager; new (N, C') features."""
        return SparseTensor(self.coords, feats, self.stride, self.manager)

    @property
    def num_channels(self) -> int:
        return int(self.feats.shape[1])

    def __len__(self) -> int:
        return int(self.feats.shape[0])


# ----------------------------------------------------------------- gather-GEMM-scatter
@dataclass(eq=False)
class _Plan:
    """How a conv walks its pairs: index lists (maybe padded) and chunks of pieces.

    in_idx, out_idx: (P',) int64; padding pairs point at the extra zero row ``num_in`` /
        the extra scratch row ``num_out``.
    chunks: [(start, end, [(k, a, b), ...])]: rows [start, end) of the index lists, made of
        pieces [a, b) (relative to start) that all use weight offset k.
    """

    in_idx: torch.Tensor
    out_idx: torch.Tensor
    chunks: list
    padded: bool


def _bucket(n: int) -> int:
    """n rounded up to one of 16 sizes per octave (at least 64): keeps the number of distinct
    matmul shapes small, which matters for libraries that compile a kernel per shape."""
    step = 1 << max(6, n.bit_length() - 5)
    return -(-n // step) * step


def _plan(kmap: KernelMap, rows: int, pad: bool) -> _Plan:
    """Split each offset's pairs into pieces of at most ``rows`` (a power of two) and group
    consecutive pieces into chunks of at most ``rows``; with ``pad`` every piece length is
    rounded up by ``_bucket`` with dummy pairs. Cached on the kernel map."""
    cache = kmap._plans
    if (rows, pad) in cache:
        return cache[(rows, pad)]
    pieces = []  # (k, first pair, length, padded length)
    first = 0
    for k, count in zip(kmap.offsets, kmap.counts):
        for begin in range(0, count, rows):
            length = min(rows, count - begin)
            pieces.append((k, first + begin, length, min(rows, _bucket(length)) if pad else length))
        first += count
    chunks, pending, start, cur = [], [], 0, 0
    for k, _, _, padded in pieces:
        if cur - start + padded > rows:
            chunks.append((start, cur, pending))
            pending, start = [], cur
        pending.append((k, cur - start, cur - start + padded))
        cur += padded
    if pending:
        chunks.append((start, cur, pending))
    if pad and any(length != padded for _, _, length, padded in pieces):
        device = kmap.in_idx.device
        sel = torch.cat(
            [
                torch.cat([torch.arange(f, f + n, device=device), torch.full((p - n,), -1, device=device)])
                for _, f, n, p in pieces
            ]
        )
        safe = sel.clamp(min=0)
        in_idx = torch.where(sel >= 0, kmap.in_idx[safe], kmap.num_in)
        out_idx = torch.where(sel >= 0, kmap.out_idx[safe], kmap.num_out)
        plan = _Plan(in_idx, out_idx, chunks, padded=True)
    else:
        plan = _Plan(kmap.in_idx, kmap.out_idx, chunks, padded=False)
    cache[(rows, pad)] = plan
    return plan


def _rows_per_chunk(*channels: int) -> int:
    """Largest power of two with rows * max(channels) <= CHUNK_ELEMENTS (at least 64)."""
    rows = max(64, CHUNK_ELEMENTS // max(channels))
    return 1 << (rows.bit_length() - 1)


def _pad_shapes(dtype: torch.dtype) -> bool:
    """Bucket matmul shapes for bfloat16 / float16, whose CPU kernels are built per shape."""
    return dtype in (torch.bfloat16, torch.float16)


def _with_zero_row(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(1, x.shape[1])])


def _im2col(feats, kmap: KernelMap, volume: int) -> torch.Tensor:
    """(num_out, volume * C_in): the input features of every kernel offset of each output,
    zero where there is no neighbour. Only for few input channels (the stem conv)."""
    cols = feats.new_zeros(kmap.num_out, volume, feats.shape[1])
    if kmap.centre is not None:
        cols[:, kmap.centre] = feats
    cols[kmap.out_idx, kmap.pair_offsets()] = feats.index_select(0, kmap.in_idx)
    return cols.view(kmap.num_out, -1)


def _use_im2col(feats, weight) -> bool:
    return feats.shape[1] * weight.shape[0] <= IM2COL_MAX_COLUMNS


def _conv_forward(feats, weight, kmap: KernelMap, out_dtype):
    """out[o] = sum over pairs (i -> o, offset k) of feats[i] @ weight[k].

    feats (num_in, A) and weight (K, A, B) in the compute dtype; returns (num_out, B) in
    ``out_dtype`` (products computed in the compute dtype are accumulated in out_dtype)."""
    c_out = weight.shape[2]
    if _use_im2col(feats, weight):
        return _to_dtype(_im2col(feats, kmap, weight.shape[0]) @ weight.reshape(-1, c_out), out_dtype)
    rows = _rows_per_chunk(feats.shape[1], c_out)
    plan = _plan(kmap, rows, _pad_shapes(feats.dtype))
    extra = 1 if plan.padded else 0  # scratch output row for the padding pairs
    out = torch.zeros(kmap.num_out + extra, c_out, dtype=out_dtype, device=feats.device)
    if kmap.centre is not None:
        out[: kmap.num_out] = _to_dtype(feats @ weight[kmap.centre], out_dtype)
    source = _with_zero_row(feats) if plan.padded else feats
    for start, end, parts in plan.chunks:
        gathered = source.index_select(0, plan.in_idx[start:end])
        products = feats.new_empty(end - start, c_out)
        for k, a, b in parts:
            torch.mm(gathered[a:b], weight[k], out=products[a:b])
        out.index_add_(0, plan.out_idx[start:end], _to_dtype(products, out_dtype))
    return out[: kmap.num_out] if extra else out


def _conv_backward(feats, weight, grad_out, kmap: KernelMap, need_feats: bool, need_weight: bool, out_dtype):
    """Gradients of ``_conv_forward``: (num_in, A) for feats and (K, A, B) for weight, in
    ``out_dtype``. One gather of grad_out rows per chunk serves both gradients."""
    w_t = weight.transpose(1, 2)
    grad_feats = grad_weight = None
    if _use_im2col(feats, weight):
        volume, c_in, c_out = weight.shape
        if need_weight:
            cols = _im2col(feats, kmap, volume)
            grad_weight = _to_dtype(cols.t() @ grad_out, out_dtype).view(volume, c_in, c_out)
        if need_feats:
            grad_cols = (grad_out @ weight.reshape(-1, c_out).t()).view(kmap.num_out, volume, c_in)
            grad_feats = torch.zeros(kmap.num_in, c_in, dtype=out_dtype, device=feats.device)
            if kmap.centre is not None:
                grad_feats += _to_dtype(grad_cols[:, kmap.centre], out_dtype)
            picked = grad_cols[kmap.out_idx, kmap.pair_offsets()]
            grad_feats.index_add_(0, kmap.in_idx, _to_dtype(picked, out_dtype))
        return grad_feats, grad_weight
    rows = _rows_per_chunk(feats.shape[1], grad_out.shape[1])
    plan = _plan(kmap, rows, _pad_shapes(feats.dtype))
    extra = 1 if plan.padded else 0
    if need_feats:
        grad_feats = torch.zeros(kmap.num_in + extra, feats.shape[1], dtype=out_dtype, device=feats.device)
        if kmap.centre is not None:
            grad_feats[: kmap.num_in] = _to_dtype(grad_out @ w_t[kmap.centre], out_dtype)
    if need_weight:
        grad_weight = torch.zeros(weight.shape, dtype=out_dtype, device=feats.device)
        if kmap.centre is not None:
            grad_weight[kmap.centre] = _to_dtype(feats.t() @ grad_out, out_dtype)
    source = _with_zero_row(feats) if plan.padded else feats
    grad_source = _with_zero_row(grad_out) if plan.padded else grad_out
    for start, end, parts in plan.chunks:
        g = grad_source.index_select(0, plan.out_idx[start:end])
        if need_weight:
            x = source.index_select(0, plan.in_idx[start:end])
            for k, a, b in parts:
                if out_dtype == feats.dtype:
                    grad_weight[k].addmm_(x[a:b].t(), g[a:b])
                else:
                    grad_weight[k] += _to_dtype(x[a:b].t() @ g[a:b], out_dtype)
        if need_feats:
            products = g.new_empty(end - start, feats.shape[1])
            for k, a, b in parts:
                torch.mm(g[a:b], w_t[k], out=products[a:b])
            grad_feats.index_add_(0, plan.in_idx[start:end], _to_dtype(products, out_dtype))
    if grad_feats is not None and extra:
        grad_feats = grad_feats[: kmap.num_in]
    return grad_feats, grad_weight


def _to_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast, with exact bit-twiddling for float32 <-> bfloat16 on CPU (torch's own CPU
    conversion runs about 100x slower on some builds); both round to nearest even."""
    if x.dtype == dtype:
        return x
    if x.device.type == "cpu" and {x.dtype, dtype} == {torch.float32, torch.bfloat16}:
        x = x.contiguous()
        if dtype == torch.float32:
            return (x.view(torch.int16).to(torch.int32) << 16).view(torch.float32)
        bits = x.view(torch.int32)
        rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
        return rounded.to(torch.int16).view(torch.bfloat16)
    return x.to(dtype)


class _SparseConvFunction(torch.autograd.Function):
    """Sparse conv with a hand-written backward that never keeps gathered buffers alive:
    only the input features (in the compute dtype) and the weight are saved."""

    @staticmethod
    def forward(ctx, feats, weight, kmap, compute_dtype):
        out_dtype = feats.dtype
        feats_c, weight_c = _to_dtype(feats, compute_dtype), _to_dtype(weight, compute_dtype)
        ctx.save_for_backward(feats_c, weight_c)
        ctx.kmap, ctx.dtypes = kmap, (out_dtype, weight.dtype)
        with torch.autocast(feats.device.type, enabled=False):
            return _conv_forward(feats_c, weight_c, kmap, out_dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        feats_c, weight_c = ctx.saved_tensors
        feats_dtype, weight_dtype = ctx.dtypes
        grad_out = _to_dtype(grad_out.contiguous(), feats_c.dtype)
        with torch.autocast(grad_out.device.type, enabled=False):
            grad_feats, grad_weight = _conv_backward(
                feats_c, weight_c, grad_out, ctx.kmap, ctx.needs_input_grad[0], ctx.needs_input_grad[1], feats_dtype
            )
        if grad_weight is not None:
            grad_weight = _to_dtype(grad_weight, weight_dtype)
        return grad_feats, grad_weight, None, None


def sparse_conv(
    feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, compute_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Functional sparse conv: feats (num_in, C_in), weight (K, C_in, C_out) -> (num_out, C_out)
    in feats' dtype. ``compute_dtype`` (e.g. torch.bfloat16) is the dtype of the gathered
    features and of the matmuls; products are accumulated in feats' dtype."""
    if kmap.centre is not None and not kmap.counts:  # 1x1x1 kernel: a plain matmul
        return feats @ weight[kmap.centre]
    compute_dtype = compute_dtype or feats.dtype
    return _SparseConvFunction.apply(feats.contiguous(), weight, kmap, compute_dtype)


# ------------------------------------------------------------------------ modules
class _SparseConvBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        volume = kernel_size**3
        self.weight = nn.Parameter(torch.empty(volume, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.compute_dtype: torch.dtype | None = None  # None: the features' dtype
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming normal (fan-out, ReLU gain), like the MinkowskiEngine examples."""
        fan_out = self.weight.shape[0] * self.out_channels
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / fan_out))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _finish(self, x: SparseTensor, feats: torch.Tensor, out_stride: int) -> SparseTensor:
        if self.bias is not None:
            feats = feats + self.bias
        return SparseTensor(x.manager.coords_at(out_stride), feats, out_stride, x.manager)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"


class SparseConv3d(_SparseConvBase):
    """Sparse 3D convolution.

    stride 1 (odd kernel): submanifold conv, output coords = input coords (same order).
    stride 2 (kernel 2, or odd kernels): output coords = unique(floor(c / (2 s)) * 2 s) per
    batch item, sorted by (b, x, y, z). Weight (kernel_size**3, in, out)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, dilation=1, bias=False):
        if stride == 1 and kernel_size % 2 == 0:
            raise ValueError("a stride-1 sparse conv needs an odd kernel size")
        if stride > 1 and kernel_size % 2 == 0 and kernel_size != stride:
            raise ValueError("an even kernel is only supported with kernel_size == stride")
        super().__init__(in_channels, out_channels, kernel_size, bias)
        self.stride, self.dilation = stride, dilation

    def forward(self, x: SparseTensor) -> SparseTensor:
        out_stride = x.stride * self.stride
        kmap = x.manager.kernel_map(x.stride, out_stride, self.kernel_size, self.dilation)
        return self._finish(x, sparse_conv(x.feats, self.weight, kmap, self.compute_dtype), out_stride)


class SparseConvTranspose3d(_SparseConvBase):
    """Transposed sparse conv (upsampling by ``stride``) onto the finer coordinates that the
    matching ``SparseConv3d(kernel_size, stride)`` came from: the decoder returns exactly to
    the encoder's coordinate sets and order. Weight (kernel_size**3, in, out), equal to the
    dense ``conv_transpose3d`` weight ``w[:, :, ix, iy, iz]``."""

    def __init__(self, in_channels, out_channels, kernel_size=2, stride=2, bias=False):
        if stride < 2:
            raise ValueError("SparseConvTranspose3d needs stride >= 2")
        super().__init__(in_channels, out_channels, kernel_size, bias)
        self.stride = stride

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.stride % self.stride:
            raise ValueError(f"cannot upsample a stride-{x.stride} tensor by {self.stride}")
        out_stride = x.stride // self.stride
        kmap = x.manager.kernel_map(x.stride, out_stride, self.kernel_size, 1)
        return self._finish(x, sparse_conv(x.feats, self.weight, kmap, self.compute_dtype), out_stride)


class SparseBatchNorm(nn.BatchNorm1d):
    """BatchNorm over all voxels of the batch: (N, C) features."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace_feats(super().forward(x.feats))


class SparseReLU(nn.Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(torch.relu_(x.feats) if self.inplace else torch.relu(x.feats))


def set_compute_dtype(module: nn.Module, dtype: torch.dtype | None) -> None:
    """Run the gather-GEMM of every sparse conv inside ``module`` in ``dtype`` (None: the
    features' dtype). torch.bfloat16 is about 2x faster on CPUs with AVX512-BF16 / AMX
    (``bf16_is_fast()``) and much slower on others; outputs and gradients stay float32."""
    for m in module.modules():
        if isinstance(m, _SparseConvBase):
            m.compute_dtype = dtype


def bf16_is_fast(device: torch.device | str = "cpu") -> bool:
    """True where bfloat16 matmuls run natively: CUDA GPUs of compute capability >= 8, and
    CPUs with AVX512-BF16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def sparse_cat(a: SparseTensor, b: SparseTensor) -> SparseTensor:
    """Concatenate the channels of two tensors on the same coordinates (skip connections)."""
    if a.manager is not b.manager or a.stride != b.stride:
        raise ValueError("sparse_cat needs tensors of the same coordinate manager and stride")
    return a.replace_feats(torch.cat([a.feats, b.feats], dim=1))
