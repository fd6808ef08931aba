"""Scan -> per-point class probabilities with a trained network, whole or in xy tiles.

A scan is voxelised once; its voxel indices are shifted so that the smallest voxel index
is 0 on every axis (the network's down-sampling cells then do not depend on where the scan
lies in the world). Small scans go through the network in one forward pass.

Large scans (more voxels than ``max_voxels``) are cut into square xy tiles whose edges lie
on multiples of 16 voxels, so the U-Net's stride-16 cells are exactly those of the whole
scan. Each tile is run with ``overlap`` voxels of context on every side and only the
predictions of its *core* are kept. Every voxel lies in exactly one core; peak memory then
depends on the densest tile, not on the scan.

Exactness. The output of MinkUNet14 at a voxel depends on input voxels at most
``MINKUNET14_REACH = 107`` voxels away along each axis (:func:`minkunet14_reach` derives it
from the layer list: stem kernel 5, BasicBlocks of two 3x3x3 convs at strides 1..16, 2x2x2
down/up-sampling cells). With ``overlap >= 107`` (default ``DEFAULT_OVERLAP = 112``, the
next multiple of 16; 5.6 m at 5 cm voxels) and the network in eval mode (BatchNorm uses
its running statistics, everything after the backbone acts per voxel), tiled inference
equals whole-scan inference up to float rounding (BLAS blocking depends on the number of
rows; measured: max |difference| of probabilities 2e-8 for the full-size network, 4e-6 for
the deliberately sharp test network). A smaller overlap is allowed and faster, but then
voxels closer than ``107 - overlap`` voxels to their core's border see a truncated context
and may differ (tests/test_predict.py checks both sides of that line).

Cost: with core edge T and overlap m, a tile's forward covers about ((T + 2m) / T)**2 times
its core area, so T should be as large as memory allows (``choose_tile_size`` does that).
With the exact overlap (5.6 m of context on each side) a dense indoor scan needs roughly
``max_voxels >= 1e6`` (about 3.3 GB on CPU at ~3.3 KB per voxel) to keep the extra compute
under ~4x; below ~3e5 voxels even a 16-voxel core does not fit and ConfigError says so.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from cad2scan.errors import ConfigError
from cad2scan.geometry.voxel import voxelise
from cad2scan.model.backbone import make_sparse_input

TILE_ALIGN = 16  # voxels; total down-sampling factor of MinkUNet14 (4 stride-2 stages)
MINKUNET14_REACH = 107  # voxels; see minkunet14_reach()
DEFAULT_OVERLAP = 112  # smallest multiple of TILE_ALIGN >= MINKUNET14_REACH
GATHER_ROWS = 1 << 20  # points per chunk when copying voxel probabilities to points


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; an unavailable CUDA request says what to do."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but this torch build has no usable CUDA "
                          f"(torch {torch.__version__}); install a CUDA build of torch==2.13.0 or use --device cpu")
    return device


def minkunet14_reach() -> int:
    """Largest distance (voxels, along one axis) between an output voxel of MinkUNet14 and an
    input voxel it depends on, over all positions of the output inside its stride-16 cell.

    Follows the dependencies backwards through the layers of
    ``cad2scan.model.backbone.MinkUNet14`` in 1D (the kernels are cubes, so axes separate):
    stem (kernel 5: +-2), encoder stage at stride s (two 3x3x3 convs: +-2s) after a
    kernel-2 down-sampling (a stride-s output reads the cell [c, c + s) of stride s/2),
    decoder stage at stride s (+-2s) reading its transposed-conv parent cell
    floor(c / 2s) * 2s and the encoder skip of stride s. Returns 107.
    """

    def grow(cells: set[int], radius: int) -> set[int]:
        return {c + d for c in cells for d in range(-radius, radius + 1)}

    def encoder(stride: int, cells: set[int]) -> set[int]:  # encoder output at stride -> input voxels
        if stride == 1:
            return grow(cells, 2)
        half = stride // 2
        return encoder(half, {c + d for c in grow(cells, 2 * stride) for d in (0, half)})

    def decoder(stride: int, cells: set[int]) -> set[int]:  # decoder output at stride -> input voxels
        cells = grow(cells, 2 * stride)
        parents = {(c // (2 * stride)) * 2 * stride for c in cells}
        coarse = encoder(16, parents) if 2 * stride == 16 else decoder(2 * stride, parents)
        return coarse | encoder(stride, cells)

    reach = 0
    for x in range(TILE_ALIGN):
        inputs = decoder(1, {x})
        reach = max(reach, x - min(inputs), max(inputs) - x)
    return reach


# ------------------------------------------------------------------------------ tiles
@dataclass
class Tile:
    """One xy tile of a voxelised scan.

    rows: (m,) int64, sorted rows of the scan's voxels inside the context window
        [x0 - overlap, x0 + size + overlap) x [y0 - overlap, y0 + size + overlap).
    core: (m,) bool, True for the rows inside the core [x0, x0 + size) x [y0, y0 + size);
        every voxel of the scan is in the core of exactly one tile.
    origin: (x0, y0), voxel indices of the core's corner (multiples of 16).
    """

    rows: np.ndarray
    core: np.ndarray
    origin: tuple[int, int]


def _check_tiling(tile_size: int | None, overlap: int) -> None:
    if tile_size is not None and (tile_size < TILE_ALIGN or tile_size % TILE_ALIGN):
        raise ConfigError(f"tile_size must be a positive multiple of {TILE_ALIGN} voxels, got {tile_size}")
    if overlap < 0 or overlap % TILE_ALIGN:
        raise ConfigError(f"overlap must be a non-negative multiple of {TILE_ALIGN} voxels, got {overlap}")


def iter_tiles(voxel_coords: np.ndarray, tile_size: int, overlap: int = DEFAULT_OVERLAP) -> Iterator[Tile]:
    """The non-empty tiles of a scan, x-major.

    voxel_coords: (M, 3) int, voxel indices >= 0 sorted lexicographically by (x, y, z)
    (as ``voxelise`` returns them, shifted to a zero minimum). ``tile_size`` and ``overlap``
    are multiples of 16 voxels. Tiles whose core holds no voxel are skipped.
    """
    _check_tiling(tile_size, overlap)
    x = voxel_coords[:, 0]
    y = voxel_coords[:, 1]
    tiles_y = int(y.max()) // tile_size + 1
    for x0 in range(0, int(x.max()) + 1, tile_size):
        lo = int(np.searchsorted(x, x0 - overlap, side="left"))
        hi = int(np.searchsorted(x, x0 + tile_size + overlap, side="left"))
        if not np.any((x[lo:hi] >= x0) & (x[lo:hi] < x0 + tile_size)):
            continue
        by_y = np.argsort(y[lo:hi], kind="stable")
        strip_y = y[lo:hi][by_y]
        for y0 in range(0, tiles_y * tile_size, tile_size):
            a = int(np.searchsorted(strip_y, y0 - overlap, side="left"))
            b = int(np.searchsorted(strip_y, y0 + tile_size + overlap, side="left"))
            rows = np.sort(by_y[a:b]).astype(np.int64) + lo
            tx, ty = x[rows], y[rows]
            core = (tx >= x0) & (tx < x0 + tile_size) & (ty >= y0) & (ty < y0 + tile_size)
            if core.any():
                yield Tile(rows, core, (x0, y0))


def _window_counts(integral: np.ndarray, cells: int, margin: int) -> np.ndarray:
    """Voxel counts of the context windows of every tile of ``cells`` x ``cells`` columns."""
    nx, ny = integral.shape[0] - 1, integral.shape[1] - 1
    xi = np.arange(-(-nx // cells)) * cells
    yi = np.arange(-(-ny // cells)) * cells
    x_lo, x_hi = np.clip(xi - margin, 0, nx), np.clip(xi + cells + margin, 0, nx)
    y_lo, y_hi = np.clip(yi - margin, 0, ny), np.clip(yi + cells + margin, 0, ny)
    return (integral[np.ix_(x_hi, y_hi)] - integral[np.ix_(x_lo, y_hi)]
            - integral[np.ix_(x_hi, y_lo)] + integral[np.ix_(x_lo, y_lo)])


def choose_tile_size(voxel_coords: np.ndarray, max_voxels: int, overlap: int = DEFAULT_OVERLAP) -> int:
    """Largest tile edge (a multiple of 16 voxels) whose every context window holds at most
    ``max_voxels`` voxels (counted on a 16 x 16-voxel column histogram, so exactly).

    voxel_coords: (M, 3) int, voxel indices >= 0. Raises ConfigError when even 16-voxel tiles
    are too dense (lower the overlap or raise max_voxels).
    """
    _check_tiling(None, overlap)
    if max_voxels < 1:
        raise ConfigError(f"max_voxels must be a positive integer, got {max_voxels}")
    columns = voxel_coords[:, :2].astype(np.int64) // TILE_ALIGN
    nx, ny = (int(v) + 1 for v in columns.max(axis=0))
    hist = np.bincount(columns[:, 0] * ny + columns[:, 1], minlength=nx * ny).reshape(nx, ny)
    integral = np.zeros((nx + 1, ny + 1), dtype=np.int64)
    integral[1:, 1:] = hist.cumsum(0).cumsum(1)
    margin = overlap // TILE_ALIGN
    for cells in range(max(nx, ny), 0, -1):
        occupied = _window_counts(integral, cells, 0) > 0
        if _window_counts(integral, cells, margin)[occupied].max() <= max_voxels:
            return cells * TILE_ALIGN
    densest = int(_window_counts(integral, 1, margin).max())
    raise ConfigError(f"max_voxels={max_voxels} is too small: a {TILE_ALIGN}-voxel tile with its {overlap}-voxel "
                      f"overlap holds up to {densest} voxels; raise max_voxels or lower the overlap")


# -------------------------------------------------------------------------- inference
def _voxel_probabilities(net: torch.nn.Module, voxel_coords: np.ndarray, device: torch.device) -> torch.Tensor:
    """(m, 3) int voxel indices -> (m, C) float32 softmax of the logits, on the CPU."""
    sparse = make_sparse_input([voxel_coords], None, device)
    logits = net(sparse)["logits"]
    return torch.softmax(logits.float(), dim=1).cpu()


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024), "process_max_rss"


@torch.no_grad()
def predict_scan(net: torch.nn.Module, coord: np.ndarray, voxel_size: float, device: torch.device | str = "cpu",
                 max_voxels: int | None = None, tile_size: int | None = None, overlap: int = DEFAULT_OVERLAP,
                 progress: bool = False) -> tuple[np.ndarray, dict]:
    """Class probabilities of every point, and a report of the run.

    coord: (N, 3) float, metres, z up. voxel_size: metres.
    max_voxels: when the scan has more voxels, it is cut into xy tiles (None: no limit).
    tile_size: core edge of a tile in voxels (multiple of 16); None picks the largest edge
        whose context windows fit in ``max_voxels``. Given with ``max_voxels=None`` it
        forces tiling.
    overlap: context margin around each core, voxels (multiple of 16); >= 107 is exact.

    Returns ``probabilities`` (N, C) float32, rows sum to 1, in the order of ``coord``
    (points sharing a voxel share its probabilities), and a dict: ``points``, ``voxels``,
    ``tiles`` (forward passes), ``tile_size`` (None when whole), ``overlap``,
    ``voxels_processed`` (summed over forward passes, context included),
    ``max_forward_voxels``, ``seconds``, ``peak_memory_bytes`` and ``peak_memory_kind``:
    ``cuda_max_memory_allocated`` (reset at the start of the call) or ``process_max_rss``
    (the process's lifetime peak resident set size, from ``resource.getrusage``).
    """
    device = torch.device(device)
    _check_tiling(tile_size, overlap)
    if max_voxels is not None and max_voxels < 1:
        raise ConfigError(f"max_voxels must be a positive integer, got {max_voxels}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    coord = np.asarray(coord)
    if coord.ndim != 2 or coord.shape[0] == 0:
        raise ValueError(f"predict needs a non-empty (N, 3) point array, got shape {coord.shape}")
    grid = voxelise(coord, voxel_size)
    voxel_coords = grid.voxel_coords  # (M, 3) int32, shifted in place to a zero minimum
    voxel_coords -= voxel_coords.min(axis=0)
    num_voxels = grid.num_voxels

    if max_voxels is not None and num_voxels <= max_voxels:
        tile_size = None
    elif tile_size is None and max_voxels is not None:
        tile_size = choose_tile_size(voxel_coords, max_voxels, overlap)

    was_training = net.training
    net.eval()
    tiles = processed = largest = 0
    try:
        if tile_size is None:
            voxel_probs = _voxel_probabilities(net, voxel_coords, device).numpy()
            tiles, processed, largest = 1, num_voxels, num_voxels
        else:
            voxel_probs = None
            tile_iter = iter_tiles(voxel_coords, tile_size, overlap)
            for tile in tqdm(tile_iter, desc="tiles", unit="tile", disable=not progress, dynamic_ncols=True):
                probs = _voxel_probabilities(net, voxel_coords[tile.rows], device)
                if voxel_probs is None:
                    voxel_probs = np.empty((num_voxels, probs.shape[1]), dtype=np.float32)
                voxel_probs[tile.rows[tile.core]] = probs[torch.from_numpy(tile.core)].numpy()
                tiles += 1
                processed += len(tile.rows)
                largest = max(largest, len(tile.rows))
                del probs, tile
    finally:
        net.train(was_training)

    probabilities = np.empty((coord.shape[0], voxel_probs.shape[1]), dtype=np.float32)
    for start in range(0, coord.shape[0], GATHER_ROWS):
        stop = min(start + GATHER_ROWS, coord.shape[0])
        np.take(voxel_probs, grid.point_to_voxel[start:stop], axis=0, out=probabilities[start:stop], mode="clip")
    peak, kind = _peak_memory(device)
    report = {
        "points": int(coord.shape[0]),
        "voxels": num_voxels,
        "tiles": tiles,
        "tile_size": tile_size,
        "overlap": overlap if tile_size is not None else None,
        "voxels_processed": processed,
        "max_forward_voxels": largest,
        "seconds": time.perf_counter() - started,
        "peak_memory_bytes": peak,
        "peak_memory_kind": kind,
    }
    return probabilities, report


def predict_probabilities(net: torch.nn.Module, coord: np.ndarray, voxel_size: float,
                          device: torch.device | str = "cpu", max_voxels: int | None = None,
                          tile_size: int | None = None, overlap: int = DEFAULT_OVERLAP) -> np.ndarray:
    """Class probabilities of every point: (N, 3) float32 metres -> (N, C) float32.

    Rows sum to 1, in the order of ``coord``; points sharing a voxel share its probabilities.
    ``max_voxels`` / ``tile_size`` / ``overlap``: tiled inference, see :func:`predict_scan`.
    """
    return predict_scan(net, coord, voxel_size, device, max_voxels, tile_size, overlap)[0]
