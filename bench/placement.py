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
    parser.add_argument("--summarise", action="store_true", help="only summarise the finished runs in OUT")
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
    if not args.summarise:
        for seed in seeds:
            result = run_experiment("placement", data=dataset, out_dir=args.out / f"seed{seed}", seed=seed,
                                    overrides=base, progress=False)
            rows = result["meta"]["rows"]
            print(f"seed {seed}: " + ", ".join(f"{row} {rows[row]['AmAP']:.2f}" for row in rows), flush=True)
    summarise(args.out, args.data, seeds)


def chance_amap(document: dict) -> float:
    """AmAP of random scores on the evaluated scans (each class's AP = its share of the points)."""
    from cad2scan.classes import load_category_set
    from cad2scan.zeroshot import nan_mean, positive_rates

    data = next(iter(document["meta"]["rows"].values()))["config"]["data"]
    folder = Path(data["cache_dir"]) / "scenes" / data["scene_format"] / "labelled-full"
    files = [folder / scene for scene in document["meta"]["eval_scenes"]]
    return nan_mean(list(positive_rates(files, load_category_set(data["categories"])).values()))


def summarise(out: Path, data: str, seeds: list[int]) -> None:
    """Print and write OUT/placement_summary.{md,json} from OUT/seed<N>/results/placement.json."""
    amap: dict[str, dict[int, float]] = {}
    per_class: dict[str, dict[int, dict[str, float | None]]] = {}
    for seed in seeds:
        document = json.loads((out / f"seed{seed}" / "results" / "placement.json").read_text())
        for row, record in document["methods"].items():
            amap.setdefault(row, {})[seed] = record["AmAP"]
            per_class.setdefault(row, {})[seed] = record["AP"]

    def wins(row: str, seed: int) -> tuple[int, int]:
        """(classes where ``row`` beats random placement, classes scored) for one seed."""
        pairs = [(ap, per_class["pda_fa"][seed][name]) for name, ap in per_class[row][seed].items()
                 if ap is not None and per_class["pda_fa"][seed].get(name) is not None]
        return sum(a > b for a, b in pairs), len(pairs)

    chance = chance_amap(json.loads((out / f"seed{seeds[0]}" / "results" / "placement.json").read_text()))
    lines = ["| row | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std | mean - random | classes above random |",
             "|---|" + "---:|" * (len(seeds) + 4)]
    for row, values in amap.items():
        series = [values[s] for s in seeds]
        delta = [values[s] - amap["pda_fa"][s] for s in seeds]
        spread = statistics.stdev(series) if len(series) > 1 else 0.0
        won = [wins(row, s) for s in seeds]
        above = "-" if row == "pda_fa" else f"{sum(w for w, _ in won)} of {sum(n for _, n in won)}"
        lines.append(f"| {row} | " + " | ".join(f"{v:.2f}" for v in series)
                     + f" | {statistics.mean(series):.2f} | {spread:.2f} | {statistics.mean(delta):+.2f} | {above} |")
    lines.append(f"| chance (random scores) | " + " | ".join(f"{chance:.2f}" for _ in seeds) + f" | {chance:.2f} | | | |")
    table = "\n".join(lines)
    print(f"\nAmAP (%) on {data}, placement table, seeds {seeds}\n{table}")
    (out / "placement_summary.md").write_text(table + "\n")
    (out / "placement_summary.json").write_text(json.dumps({"data": data, "seeds": seeds, "AmAP": amap,
                                                           "AP": per_class}, indent=1))


if __name__ == "__main__":
    main()
