"""Random vs layout-aware placement of the mixed-in CAD models: AmAP over several seeds.

    python bench/placement.py --data demo   --seeds 0,1,2 --out /tmp/placement_demo
    python bench/placement.py --data shared --seeds 0,1   --out /tmp/placement_shared

Runs the ``placement`` experiment table (rows ``pda_fa`` = the paper's random placement,
``layout``, ``layout_replace``) once per training seed on the same data and prints AmAP per
row and seed with the mean and standard deviation, and the per-seed difference to random.

``--data demo``: the embedded demo benchmark (generated once into OUT/data, demo preset).
``--data shared``: the real samples in ``../shared/data`` (see its SOURCES.md): the CAD
meshes there are linked into a ModelNet-style folder under OUT, the 12 VoteNet ScanNet
exports are split by room (scene0003/0004/0005/0007 unlabelled for mixing, scene0000/0002
labelled for evaluation) and scored on the six classes that have both CAD meshes and scene
points there (bed, chair, desk, sofa, table, toilet). Far too small for absolute numbers:
it checks the comparison on real scans. The schedule is the demo preset's in both cases.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SHARED_CLASSES = {"bed": [4], "chair": [5], "desk": [14], "sofa": [6], "table": [7], "toilet": [33]}
SHARED_TRAIN = "scene0003_00,scene0003_01,scene0003_02,scene0004_00,scene0005_00,scene0005_01,scene0007_00"
SHARED_EVAL = "scene0000_00,scene0000_01,scene0000_02,scene0002_00,scene0002_01"
DEMO_SCHEDULE = ["model.backbone.width_scale=0.5", "align.scene_crop=4.0", "train.batch_size=2", "train.epochs=1",
                 "train.steps_per_epoch=250"]


def assemble_shared(out: Path) -> list[str]:
    """Link the shared ModelNet meshes into OUT/cad/<class>/train/ and write the category set;
    return the overrides pointing a scannet config at them."""
    source = SHARED / "modelnet40"
    if not source.is_dir():
        raise SystemExit(f"{source} is missing: --data shared needs the shared samples beside the repository")
    cad = out / "cad"
    for mesh in sorted(source.rglob("*.off")):
        name = mesh.stem.rsplit("_", 1)[0]
        collection = mesh.parts[-4] if mesh.parent.name in ("train", "test") else mesh.parent.name
        link = cad / name / "train" / f"{collection}_{mesh.name}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(mesh.resolve())
    categories = out / "shared6.yaml"
    lines = ["name: shared6", "scene_label_space: nyu40", "ignore_scene_labels: [0]", "negatives: auto", "classes:"]
    lines += [f"  - {{name: {n}, cad: [{n}], scene: {ids}}}" for n, ids in SHARED_CLASSES.items()]
    categories.write_text("\n".join(lines) + "\n")
    scenes = SHARED / "scannet" / "preprocessed" / "votenet_scannet_train_detection_data"
    return [f"data.cad_root={cad}", "data.scene_format=scannet_npy", f"data.scene_root={scenes.resolve()}",
            f"data.train_scenes={SHARED_TRAIN}", f"data.eval_scenes={SHARED_EVAL}", f"data.categories={categories}",
            f"data.cache_dir={out / 'cache'}"] + DEMO_SCHEDULE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["demo", "shared"], default="demo")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--out", type=Path, default=Path("placement_out"))
    parser.add_argument("--threads", type=int, default=0, help="train.num_threads (0: all cores)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra overrides")
    args = parser.parse_args(argv)

    from cad2scan.demo import demo_data_paths
    from cad2scan.experiments import run_experiment

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data == "shared":
        dataset, base = "scannet", assemble_shared(args.out)
    else:  # every seed trains on the data generated for the first one
        dataset, base = "demo", [f"data.{k}={v}" for k, v in demo_data_paths(args.out / f"seed{seeds[0]}").items()]
    base += [f"train.num_threads={args.threads}"] + args.set
    amap: dict[str, dict[int, float]] = {}
    for seed in seeds:
        result = run_experiment("placement", data=dataset, out_dir=args.out / f"seed{seed}", seed=seed,
                                overrides=base, progress=False)
        for row, record in result["meta"]["rows"].items():
            amap.setdefault(row, {})[seed] = record["AmAP"]
        print(f"seed {seed}: " + ", ".join(f"{row} {values[seed]:.2f}" for row, values in amap.items()), flush=True)

    lines = ["| row | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std | mean - random |",
             "|---|" + "---:|" * (len(seeds) + 3)]
    for row, values in amap.items():
        series = [values[s] for s in seeds]
        delta = [values[s] - amap["pda_fa"][s] for s in seeds]
        spread = statistics.stdev(series) if len(series) > 1 else 0.0
        lines.append(f"| {row} | " + " | ".join(f"{v:.2f}" for v in series)
                     + f" | {statistics.mean(series):.2f} | {spread:.2f} | {statistics.mean(delta):+.2f} |")
    table = "\n".join(lines)
    print(f"\nAmAP (%) on {args.data}, placement table, seeds {seeds}\n{table}")
    (args.out / "placement_summary.md").write_text(table + "\n")
    (args.out / "placement_summary.json").write_text(json.dumps({"data": args.data, "seeds": seeds, "AmAP": amap},
                                                                indent=1))


if __name__ == "__main__":
    main()
