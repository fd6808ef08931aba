"""What a training run reports: ``metrics.jsonl``, TensorBoard scalars, throughput meters.

``metrics.jsonl`` gets one JSON object per line: training records every ``train.log_every``
steps and evaluation records (``step``, ``eval``: AP per class, AmAP, IoU, mIoU) every
``train.eval_every`` steps. A training record holds ``step`` (steps done), ``epoch``,
``loss`` (mean over the interval's steps of the global-batch loss), ``lr``, ``scans_per_s``
and ``points_per_s`` (whole job), ``data_wait_frac`` (share of step time spent waiting for
the next batch, mean over ranks), ``voxels`` (rank 0's share of the last step), ``seconds``
since the start of this call, and ``gpu_mem_gb`` (peak, on CUDA).
TensorBoard scalars mirror them when the optional ``tensorboard`` package is installed
(``pip install 'cad2scan[tensorboard]'``); otherwise the run says once that it is off.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from cad2scan.io.atomic import atomic_write_text

log = logging.getLogger(__name__)
_tensorboard_off_logged = False
TRAIN_TAGS = {"loss": "train/loss", "lr": "train/lr", "scans_per_s": "throughput/scans_per_s",
              "points_per_s": "throughput/points_per_s", "data_wait_frac": "throughput/data_wait_frac",
              "gpu_mem_gb": "system/gpu_mem_gb"}  # metrics.jsonl key -> TensorBoard tag


def open_summary_writer(log_dir: Path, purge_step: int | None = None):
    """A ``torch.utils.tensorboard.SummaryWriter``, or None (logged once per process) when the
    tensorboard package is not installed."""
    global _tensorboard_off_logged
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _tensorboard_off_logged:
            log.info("TensorBoard logging is off (package not installed: pip install 'cad2scan[tensorboard]'); "
                     "metrics go to metrics.jsonl")
            _tensorboard_off_logged = True
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def trim_metrics(path: Path, last_step: int) -> None:
    """Drop the records of steps after ``last_step`` (written by a run killed after its last
    checkpoint, which a resumed run writes again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line).get("step", 0)
        except ValueError:  # a line cut short by a kill
            continue
        if isinstance(step, (int, float)) and step <= last_step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


class RunMonitor:
    """Writes a run's records (rank 0 only: other ranks make a monitor with ``run_dir=None``)."""

    def __init__(self, run_dir: Path | None, tensorboard: bool = True, start_step: int = 0):
        self.run_dir = run_dir
        self.writer = None
        self._metrics = None
        if run_dir is None:
            return
        metrics = run_dir / "metrics.jsonl"
        if start_step > 0:
            trim_metrics(metrics, start_step)
        else:  # a fresh run replaces an earlier one's records
            metrics.unlink(missing_ok=True)
            shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
        self._metrics = open(metrics, "a", encoding="utf-8")
        if tensorboard:
            purge = start_step + 1 if start_step else None  # resumed: drop the killed run's later events
            self.writer = open_summary_writer(run_dir / "tensorboard", purge_step=purge)

    def _write(self, record: dict) -> None:
        if self._metrics is not None:
            self._metrics.write(json.dumps(record) + "\n")
            self._metrics.flush()

    def log_train(self, record: dict) -> None:
        """A training record (see the module docstring); scalars go to TensorBoard too."""
        self._write(record)
        if self.writer is not None:
            step = record["step"]
            for key, tag in TRAIN_TAGS.items():
                if record.get(key) is not None:
                    self.writer.add_scalar(tag, record[key], step)

    def log_eval(self, step: int, result) -> None:
        """An ``EvalResult`` after ``step`` steps: AP per class, AmAP, mIoU."""
        self._write({"step": step, "eval": result.to_dict()})
        if self.writer is not None:
            for name, value in result.ap.items():
                self.writer.add_scalar(f"eval/AP/{name}", value, step)
            self.writer.add_scalar("eval/AmAP", result.amap, step)
            self.writer.add_scalar("eval/mIoU", result.miou, step)

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class ThroughputMeter:
    """Sums over a logging interval of one process: seconds blocked waiting for a batch,
    seconds per whole step, samples (scans) and points trained."""

    wait_s: float = 0.0
    step_s: float = 0.0
    steps: int = 0
    samples: int = 0
    points: int = 0

    def add(self, wait_s: float, step_s: float, samples: int, points: int) -> None:
        self.wait_s += wait_s
        self.step_s += step_s
        self.steps += 1
        self.samples += samples
        self.points += points

    def reset(self) -> None:
        self.wait_s = self.step_s = 0.0
        self.steps = self.samples = self.points = 0


def throughput(samples: float, points: float, wait_s: float, step_s: float) -> dict:
    """Rates from interval sums (for several ranks: summed samples/points, mean seconds)."""
    step_s = max(step_s, 1e-9)
    return {"scans_per_s": samples / step_s, "points_per_s": points / step_s,
            "data_wait_frac": min(1.0, max(0.0, wait_s / step_s))}
