"""A deterministic stream of training batches, optionally built in worker processes.

Batch ``step`` is built from ``numpy.random.default_rng([seed, step])`` and the scenes of
a per-epoch permutation, so the stream is the same whatever the number of workers and a
resumed run can start at any step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cad2scan.align.samples import SampleBuilder
from cad2scan.prepare import load_scene
from cad2scan.train.batch import Batch, collate_segments


class BatchStream(IterableDataset):
    """Yields ``Batch`` objects for steps ``start_step .. total_steps-1`` in order."""

    def __init__(self, builder: SampleBuilder, scene_files: list[Path], batch_size: int, voxel_size: float,
                 seed: int, total_steps: int, start_step: int = 0):
        super().__init__()
        self.builder = builder
        self.scene_files = list(scene_files)
        self.batch_size = batch_size
        self.voxel_size = voxel_size
        self.seed = seed
        self.total_steps = total_steps
        self.start_step = start_step
        self._scene_cache: dict[int, dict] = {}

    def scenes_for_step(self, step: int) -> list[int]:
        """Indices of the scans used by batch ``step`` (each epoch visits every scan once)."""
        count = len(self.scene_files)
        picks = []
        for slot in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, position = divmod(slot, count)
            order = np.random.default_rng([self.seed, 7919, epoch]).permutation(count)
            picks.append(int(order[position]))
        return picks

    def _scene(self, index: int) -> dict:
        if index not in self._scene_cache:
            self._scene_cache[index] = load_scene(self.scene_files[index])
        return self._scene_cache[index]

    def build_batch(self, step: int) -> Batch:
        rng = np.random.default_rng([self.seed, step])
        segments = []
        if self.builder.mode == "single":
            for _ in range(self.batch_size):
                segments.extend(self.builder.build(None, rng))
        else:
            for index in self.scenes_for_step(step):
                segments.extend(self.builder.build(self._scene(index), rng))
        return collate_segments(segments, self.voxel_size)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start_step, self.total_steps):
            if (step - self.start_step) % workers == worker:
                yield self.build_batch(step)


def _already_collated(batch: Batch) -> Batch:
    return batch


def make_loader(stream: BatchStream, num_workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over the stream (batches are already collated: batch_size=None)."""
    return DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      collate_fn=_already_collated, persistent_workers=False,
                      prefetch_factor=4 if num_workers > 0 else None)


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed torch (CPU and CUDA) for weight init; with ``deterministic`` ask for deterministic kernels."""
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
