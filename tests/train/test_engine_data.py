"""The batch stream: per-sample determinism, rank shares, worker processes, device copies."""

import numpy as np
import pytest
import torch
from torch.utils.data import IterableDataset

from cad2scan.align.mixing import MixConfig
from cad2scan.align.samples import SampleBuilder
from cad2scan.align.transforms import ModelAugmentConfig
from cad2scan.classes import load_category_set, load_size_priors
from cad2scan.train.data import BatchStream, TensorBatch, make_loader, rank_slots

VOXEL = 0.05

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(rng, points=256):
    """A random box-ish model: xy-centred, bottom at z=0, diagonal 1 (the model bank's frame)."""
    p = rng.uniform(0, 1, (points, 3)) * rng.uniform(0.3, 1.0, 3)
    p[:, :2] -= p[:, :2].mean(axis=0)
    p[:, 2] -= p[:, 2].min()
    return (p / np.linalg.norm(p.max(axis=0) - p.min(axis=0))).astype(np.float32)


def _room(rng, path, points=3000):
    """A floor and two walls: an unlabelled scene file (.npz, as load_scene reads it)."""
    floor = np.c_[rng.uniform(0, 4, (points, 2)), rng.normal(0, 0.005, points)]
    wall = np.c_[rng.uniform(0, 4, points // 3), np.zeros(points // 3), rng.uniform(0, 2.5, points // 3)]
    coord = np.concatenate([floor, wall]).astype(np.float32)
    np.savez(path, coord=coord, label=np.full(len(coord), -1, np.int64), floor_z=np.float64(0.0))
    return path


@pytest.fixture(scope="module")
def builder_and_scenes(tmp_path_factory):
    rng = np.random.default_rng(0)
    categories = load_category_set("scannet11")
    names = [c.cad[0] for c in categories.classes] + ["lamp"]
    bank = {name: [_model(rng), _model(rng)] for name in names}
    builder = SampleBuilder(bank, categories, load_size_priors("size_priors"), "pda", ModelAugmentConfig(),
                            MixConfig(), 1)
    root = tmp_path_factory.mktemp("scenes")
    scenes = [_room(rng, root / f"room{i}.npz") for i in range(5)]
    return builder, scenes


def _stream(builder_and_scenes, batch_size=4, rank=0, world_size=1, start_step=0, total_steps=3):
    builder, scenes = builder_and_scenes
    return BatchStream(builder, scenes, batch_size, VOXEL, seed=3, total_steps=total_steps, start_step=start_step,
                       rank=rank, world_size=world_size)


def _assert_same(a: TensorBatch, b: TensorBatch):
    assert a.step == b.step and a.item_voxels == b.item_voxels and a.num_points == b.num_points
    assert torch.equal(a.voxel_coords, b.voxel_coords)
    assert torch.equal(a.loss_voxel, b.loss_voxel) and torch.equal(a.loss_label, b.loss_label)


def test_rank_slots_are_contiguous_disjoint_and_cover_the_batch():
    assert [rank_slots(5, r, 2) for r in range(2)] == [[0, 1, 2], [3, 4]]
    assert sum((rank_slots(7, r, 3) for r in range(3)), []) == list(range(7))
    with pytest.raises(ValueError, match="smaller than"):
        rank_slots(2, 0, 3)


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shares_concatenate_to_the_single_process_batch(builder_and_scenes, world_size):
    single = _stream(builder_and_scenes)
    shares = [_stream(builder_and_scenes, rank=r, world_size=world_size) for r in range(world_size)]
    for step in range(2):
        full = single.build_tensor_batch(step)
        parts = [s.build_tensor_batch(step) for s in shares]
        assert sum(p.num_samples for p in parts) == full.num_samples == 4
        assert sum((p.item_voxels for p in parts), []) == full.item_voxels
        assert torch.equal(torch.cat([p.voxel_coords for p in parts]), full.voxel_coords)
        assert torch.equal(torch.cat([p.loss_label for p in parts]), full.loss_label)
        offsets = np.cumsum([0] + [p.num_voxels for p in parts[:-1]])
        assert torch.equal(torch.cat([p.loss_voxel + int(o) for p, o in zip(parts, offsets)]), full.loss_voxel)
        assert sum(p.num_points for p in parts) == full.num_points


def test_stream_is_the_same_with_worker_processes_and_when_resumed(builder_and_scenes):
    in_process = list(make_loader(_stream(builder_and_scenes, total_steps=4), 0, pin_memory=False))
    with_workers = list(make_loader(_stream(builder_and_scenes, total_steps=4), 2, pin_memory=False))
    resumed = list(make_loader(_stream(builder_and_scenes, start_step=2, total_steps=4), 0, pin_memory=False))
    assert [b.step for b in in_process] == [b.step for b in with_workers] == [0, 1, 2, 3]
    for a, b in zip(in_process, with_workers):
        _assert_same(a, b)
    for a, b in zip(in_process[2:], resumed):
        _assert_same(a, b)
    assert not torch.equal(in_process[0].loss_label, in_process[1].loss_label) or \
        not torch.equal(in_process[0].voxel_coords, in_process[1].voxel_coords)


class _ThreadProbe(IterableDataset):
    def __iter__(self):
        import os

        from threadpoolctl import threadpool_info

        blas = [pool["num_threads"] for pool in threadpool_info()]
        yield {"torch": torch.get_num_threads(), "omp_env": os.environ.get("OMP_NUM_THREADS"), "blas": blas}


def test_worker_processes_run_one_thread_each():
    pytest.importorskip("threadpoolctl")
    probes = list(make_loader(_ThreadProbe(), 2, pin_memory=False))
    assert len(probes) == 2
    for probe in probes:
        assert probe["torch"] == 1 and probe["omp_env"] == "1"
        assert all(n == 1 for n in probe["blas"])


def test_tensor_batch_goes_to_the_device_split_per_item(builder_and_scenes):
    batch = _stream(builder_and_scenes, batch_size=3).build_tensor_batch(0)
    coords, loss_voxel, loss_label = batch.to_device(torch.device("cpu"))
    assert [len(c) for c in coords] == batch.item_voxels and len(coords) == 3
    assert all(c.dtype == torch.int32 and c.shape[1] == 3 for c in coords)
    assert loss_voxel.dtype == loss_label.dtype == torch.int64
    assert int(loss_voxel.max()) < batch.num_voxels and int(loss_label.max()) < 12
    if torch.cuda.is_available():
        pinned = batch.pin_memory()
        assert pinned.voxel_coords.is_pinned() and torch.equal(pinned.voxel_coords, batch.voxel_coords)
        on_gpu = pinned.to_device(torch.device("cuda"))[0]
        assert torch.equal(torch.cat(on_gpu).cpu(), batch.voxel_coords)
