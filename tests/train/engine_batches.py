"""Random sparse training batches shared by the training-engine tests."""


def random_tensor_batch(labelled_voxels):
    """A TensorBatch of two items of random points (seeded); ``labelled_voxels(M) -> indices`` picks
    each item's labelled voxels, which get random class indices 0..3."""
    import numpy as np

    from cad2scan.geometry.voxel import voxelise
    from cad2scan.train.batch import Batch
    from cad2scan.train.data import TensorBatch

    rng = np.random.default_rng(0)
    coords, loss_voxel, loss_label, offset = [], [], [], 0
    for _ in range(2):
        grid = voxelise(rng.uniform(0, 1.5, (3000, 3)), 0.05)
        coords.append(grid.voxel_coords.astype(np.int32))
        labelled = np.asarray(labelled_voxels(len(grid.voxel_coords)))
        loss_voxel.append(labelled + offset)
        loss_label.append(rng.integers(0, 4, len(labelled)))
        offset += len(grid.voxel_coords)
    raw = Batch(coords, np.concatenate(loss_voxel).astype(np.int64), np.concatenate(loss_label).astype(np.int64), 6000)
    return TensorBatch.from_batch(raw, num_samples=2, step=0)
