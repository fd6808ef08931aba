"""Shared setup for the training-engine tests: a tiny generated demo dataset and run config."""

import pytest

# A quarter-width network, 8 prototypes, sparse model clouds, one epoch on one CPU thread.
TINY_RUN = ["model.backbone.width_scale=0.25", "model.hull.num_prototypes=8", "data.points_per_model=1024",
            "train.epochs=1", "train.num_threads=1", "train.device=cpu"]


@pytest.fixture(scope="session")
def tiny_demo_run(tmp_path_factory):
    """Factory ``make(name, steps, overrides) -> (root, cfg)``: a fresh folder ``root`` holding a
    tiny demo dataset (1 model per class per split, 2 train rooms, 1 eval room, scans of at most
    12000 points) in ``root / "data"``, and its ``pda_fa`` run config with ``TINY_RUN``,
    ``train.steps_per_epoch=steps`` and then ``overrides`` applied."""
    from cad2scan.demo import demo_config
    from cad2scan.synth.generate import generate_demo_dataset
    from cad2scan.synth.scanner import ScannerConfig

    def make(name: str, steps: int, overrides: list[str]):
        root = tmp_path_factory.mktemp(name)
        generate_demo_dataset(root / "data", models_per_class_train=1, models_per_class_test=1, train_rooms=2,
                              eval_rooms=1, progress=False, scanner=ScannerConfig(max_points=12000))
        return root, demo_config(root, "pda_fa", [*TINY_RUN, f"train.steps_per_epoch={steps}", *overrides])

    return make

