"""A deterministic stream of training batches, built in worker processes, ready for the GPU.

Every training sample is a pure function of ``(seed, step, slot)``: sample ``slot`` of batch
``step`` draws from ``numpy.random.default_rng([seed, step, slot])`` and mixes into the scan
that a per-epoch permutation assigns to that slot. So the stream is the same

* whatever the number of DataLoader workers (workers build whole steps, round robin),
* when a run is resumed at any step (``start_step``),
* when the B samples of a step are shared among ``world_size`` processes (distributed
  data parallel): rank r builds the slots ``np.array_split(range(B), world_size)[r]``, and
  the ranks' shares concatenated are exactly the single-process batch.

Objectives (``train.objective``) decide what a slot holds. With ``g = step * B + slot`` the
sample's index in the whole stream:

* ``rtl``: a PDA sample (CAD models mixed into unlabelled scan ``g`` of the epoch order;
  in the ``single`` / ``models_only`` recipes, models alone);
* ``supervised``: labelled training scan ``g`` of its own epoch order;
* ``rtl+supervised``: by parity of ``g``: even ``g`` is PDA sample ``g // 2``, odd ``g`` is
  labelled sample ``g // 2``. Half of every batch of even size B is each (with B = 1 the
  steps alternate), and the choice still depends on ``(step, slot)`` only.

The labelled scans have their own per-epoch permutation (seeded apart from the unlabelled
one), and :func:`labelled_subset` picks the ``train.label_fraction`` of them a run may use.

Workers hand over :class:`TensorBatch` objects (torch tensors travel through shared memory,
the DataLoader pins them for asynchronous host-to-GPU copies) and run one thread each.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cad2scan.align.labelled import LabelledSampleBuilder
from cad2scan.align.samples import SampleBuilder
from cad2scan.prepare import load_scene
from cad2scan.train.batch import Batch, collate_segments

SCENE_CACHE_SIZE = 32  # memory-mapped scans kept open per process (each holds open files)
OBJECTIVES = ("rtl", "supervised", "rtl+supervised")
_UNLABELLED_ORDER, _LABELLED_ORDER, _SUBSET_ORDER = 7919, 7927, 104729  # seed streams of the permutations


def uses_rtl(objective: str) -> bool:
    """Whether ``objective`` trains on CAD-model samples (PDA / single / models_only)."""
    return objective in ("rtl", "rtl+supervised")


def uses_labels(objective: str) -> bool:
    """Whether ``objective`` trains on labelled scans."""
    return objective in ("supervised", "rtl+supervised")


def sample_source(objective: str, batch_size: int, step: int, slot: int) -> tuple[str, int]:
    """``("rtl" | "labelled", index in that sub-stream)`` of sample ``slot`` of batch ``step``."""
    g = step * batch_size + slot
    if objective == "rtl":
        return "rtl", g
    if objective == "supervised":
        return "labelled", g
    if objective == "rtl+supervised":
        return ("rtl" if g % 2 == 0 else "labelled"), g // 2
    raise ValueError(f"unknown objective {objective!r} (known: {', '.join(OBJECTIVES)})")


def samples_per_epoch(objective: str, num_unlabelled: int, num_labelled: int) -> int:
    """Samples in one epoch: one pass over the scans the objective draws from.

    rtl: the unlabelled scans; supervised: the labelled scans; rtl+supervised: twice the
    larger of the two (each half of the stream passes over its scans at least once).
    """
    if objective == "rtl":
        return num_unlabelled
    if objective == "supervised":
        return num_labelled
    return 2 * max(num_unlabelled, num_labelled)


def labelled_subset(scene_files: list[Path], fraction: float, seed: int) -> list[Path]:
    """The ``ceil(fraction * N)`` (at least 1) labelled scans a run uses, in their given order.

    Chosen by a permutation seeded with ``seed`` alone: the same seed picks the same scans
    in every run, and a smaller fraction's scans are a subset of a larger one's.
    """
    files = list(scene_files)
    if not files:
        return []
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    count = min(len(files), max(1, math.ceil(fraction * len(files) - 1e-9)))
    order = np.random.default_rng([seed, _SUBSET_ORDER]).permutation(len(files))
    return [files[i] for i in sorted(order[:count].tolist())]


@dataclass
class TensorBatch:
    """One process's share of a training step, as tensors.

    voxel_coords: (M, 3) int32 voxel indices of all batch items concatenated.
    item_voxels:  M_b per batch item (they sum to M); item b gets batch index b.
    loss_voxel:   (S,) int64 index into the M voxels of every labelled synthetic point.
    loss_label:   (S,) int64 class index of those points.
    num_points:   points of this share (scene + synthetic), for throughput.
    num_samples:  training samples of this share (scans mixed with models; in the
                  ``single`` recipe, groups of Q + negatives models).
    step:         the global step the share belongs to.
    """

    voxel_coords: torch.Tensor
    item_voxels: list[int]
    loss_voxel: torch.Tensor
    loss_label: torch.Tensor
    num_points: int
    num_samples: int
    step: int

    @classmethod
    def from_batch(cls, batch: Batch, num_samples: int, step: int) -> "TensorBatch":
        coords = np.concatenate(batch.voxel_coords).astype(np.int32, copy=False)
        return cls(torch.from_numpy(np.ascontiguousarray(coords)), [len(c) for c in batch.voxel_coords],
                   torch.from_numpy(batch.loss_voxel), torch.from_numpy(batch.loss_label), batch.num_points,
                   num_samples, step)

    @property
    def num_voxels(self) -> int:
        return int(self.voxel_coords.shape[0])

    def pin_memory(self) -> "TensorBatch":
        """Page-locked copies (called by the DataLoader's pinning thread when pin_memory=True)."""
        return replace(self, voxel_coords=self.voxel_coords.pin_memory(), loss_voxel=self.loss_voxel.pin_memory(),
                       loss_label=self.loss_label.pin_memory())

    def to_device(self, device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(per-item (M_b, 3) int32 coords, loss_voxel, loss_label) on ``device``.

        One copy per tensor, ``non_blocking`` (asynchronous from pinned memory on CUDA).
        """
        coords = self.voxel_coords.to(device, non_blocking=True)
        return (list(coords.split(self.item_voxels)), self.loss_voxel.to(device, non_blocking=True),
                self.loss_label.to(device, non_blocking=True))


def rank_slots(batch_size: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The sample slots of a step that ``rank`` builds: contiguous, disjoint, covering range(B)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of {world_size}")
    if batch_size < world_size:
        raise ValueError(f"batch size {batch_size} is smaller than the {world_size} processes")
    return [int(s) for s in np.array_split(np.arange(batch_size), world_size)[rank]]


class BatchStream(IterableDataset):
    """Yields one :class:`TensorBatch` per step ``start_step .. total_steps-1``, in order.

    With ``rank`` / ``world_size`` the batches hold only that rank's slots (see the module
    docstring); ``batch_size`` is always the global batch size. ``objective`` picks the
    samples of each slot (module docstring): ``builder`` + ``scene_files`` (unlabelled) for
    the RTL samples, ``labelled_builder`` + ``labelled_files`` for the labelled ones
    (``builder`` may be None for ``supervised``).
    """

    def __init__(self, builder: SampleBuilder | None, scene_files: list[Path], batch_size: int, voxel_size: float,
                 seed: int, total_steps: int, start_step: int = 0, rank: int = 0, world_size: int = 1,
                 labelled_builder: LabelledSampleBuilder | None = None, labelled_files: list[Path] = (),
                 objective: str = "rtl"):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r} (known: {', '.join(OBJECTIVES)})")
        if uses_rtl(objective):
            if builder is None:
                raise ValueError(f"objective {objective!r} needs a CAD-model sample builder")
            if builder.mode == "pda" and not scene_files:
                raise ValueError("the pda recipe needs unlabelled training scans (none given)")
        if uses_labels(objective) and (labelled_builder is None or not labelled_files):
            raise ValueError(f"objective {objective!r} needs labelled training scans (none given)")
        self.objective = objective
        self.builder = builder
        self.labelled_builder = labelled_builder
        self.labelled_files = list(labelled_files)
        self.scene_files = list(scene_files)
        self.batch_size = batch_size
        self.voxel_size = voxel_size
        self.seed = seed
        self.total_steps = total_steps
        self.start_step = start_step
        self.slots = rank_slots(batch_size, rank, world_size)
        self._scene_cache: OrderedDict[tuple[int, int], dict] = OrderedDict()
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def _files(self, stream: int) -> list[Path]:
        """The scans of a sub-stream: unlabelled (``_UNLABELLED_ORDER``) or labelled."""
        return self.scene_files if stream == _UNLABELLED_ORDER else self.labelled_files

    def _epoch_order(self, epoch: int, stream: int) -> np.ndarray:
        key = (stream, epoch)
        if key not in self._orders:
            if len(self._orders) > 8:
                self._orders.clear()
            self._orders[key] = np.random.default_rng([self.seed, stream, epoch]).permutation(len(self._files(stream)))
        return self._orders[key]

    def _scene_at(self, position: int, stream: int) -> dict:
        """The scan at ``position`` of a sub-stream (every epoch visits each scan once), memory-mapped
        and kept in a small LRU cache."""
        epoch, within = divmod(position, len(self._files(stream)))
        key = (stream, int(self._epoch_order(epoch, stream)[within]))
        if key in self._scene_cache:
            self._scene_cache.move_to_end(key)
        else:
            self._scene_cache[key] = load_scene(self._files(stream)[key[1]], mmap=True)
            while len(self._scene_cache) > SCENE_CACHE_SIZE:
                self._scene_cache.popitem(last=False)
        return self._scene_cache[key]

    def build_sample(self, step: int, slot: int) -> list[dict]:
        """The segments of sample ``slot`` of batch ``step`` (independent of every other sample)."""
        rng = np.random.default_rng([self.seed, step, slot])
        kind, position = sample_source(self.objective, self.batch_size, step, slot)
        if kind == "labelled":
            return self.labelled_builder.build(self._scene_at(position, _LABELLED_ORDER), rng)
        if self.builder.mode != "pda":  # single / models_only: CAD models without a scan
            return self.builder.build(None, rng)
        return self.builder.build(self._scene_at(position, _UNLABELLED_ORDER), rng)

    def build_batch(self, step: int, slots: list[int] | None = None) -> Batch:
        """This rank's share of batch ``step`` (``slots`` overrides which samples)."""
        segments = []
        for slot in self.slots if slots is None else slots:
            segments.extend(self.build_sample(step, slot))
        return collate_segments(segments, self.voxel_size)

    def build_tensor_batch(self, step: int) -> TensorBatch:
        return TensorBatch.from_batch(self.build_batch(step), len(self.slots), step)

    def __len__(self) -> int:
        return self.total_steps - self.start_step

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start_step, self.total_steps):
            if (step - self.start_step) % workers == worker:
                yield self.build_tensor_batch(step)


def _already_collated(batch: TensorBatch) -> TensorBatch:
    return batch


def limit_worker_threads(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: one compute thread per worker process (torch, OpenMP and
    the BLAS behind numpy/scipy), so W workers beside the training process use W cores."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: numpy's BLAS then keeps its own setting
        return
    threadpool_limits(limits=1)


def make_loader(stream: BatchStream, num_workers: int, pin_memory: bool, prefetch_factor: int = 4) -> DataLoader:
    """A DataLoader over the stream (batches are already collated: batch_size=None).

    ``num_workers`` processes build ``prefetch_factor`` steps ahead each; ``pin_memory``
    page-locks batches in a background thread for ``non_blocking`` host-to-GPU copies.
    """
    return DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      collate_fn=_already_collated, persistent_workers=False,
                      worker_init_fn=limit_worker_threads if num_workers > 0 else None,
                      prefetch_factor=prefetch_factor if num_workers > 0 else None)


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed torch (CPU and CUDA) for weight init; with ``deterministic`` ask for deterministic kernels."""
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (before first use)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
