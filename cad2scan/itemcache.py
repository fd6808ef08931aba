"""A resumable, verifiable cache of arrays derived from source files, built in parallel.

One *item* is one output (a sampled CAD model, a converted scan): a few ``.npy`` arrays
plus a JSON *record* written last, so the record's presence means the arrays are complete.
The record holds what the item was made from and how::

    {"version": 2, "status": "done" | "failed", "key": ...,
     "source": {"path", "size", "sha256", "files": [{"name", "size", "mtime_ns", "sha256"}]},
     "settings": {...}, "arrays": {name: {"file", "shape", "dtype", "size", "sha256"}},
     "meta": {...}, "notes": [...], "error": null | "reason"}

An item is up to date when its record has this cache version and these settings, its source
files are unchanged and its arrays have the recorded sizes. Checking is cheap: a source
file whose size, mtime and path match the record is trusted (as ``make`` and ``rsync`` do);
only one whose mtime or path changed is hashed again (a copied or touched file with the same
content is kept, its record refreshed). ``verify=True`` hashes every source and array.

Crash safety: arrays and records are written atomically (temporary file + rename); a
record is removed before its item is rebuilt; leftover temporary files are swept at the
start of a run; a truncated or missing array fails the size check and is rebuilt.
A bad source (a :class:`~cad2scan.errors.Cad2ScanError` from its reader) gets a
``failed`` record, so it is reported again, not retried, until it or the settings change.
One process at a time prepares a cache folder (an advisory lock; others wait).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import time
import traceback
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from cad2scan.errors import Cad2ScanError
from cad2scan.io.atomic import atomic_write_bytes, atomic_write_text

CACHE_VERSION = 2
log = logging.getLogger(__name__)

# Worker processes run one item at a time: no thread pools inside them.
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ----------------------------------------------------------------------------- items
@dataclass(frozen=True)
class CacheItem:
    """What one output is made from and where it goes.

    key: unique name within its stage (``chair/chair_0001``, ``scene0000_00``).
    source: the file or folder it comes from (recorded, and shown in reports).
    source_files: the files whose content defines the item.
    record_path: the item's JSON record; array files are named relative to its folder.
    arrays: array name -> file name of its ``.npy`` (beside the record).
    settings: everything else the content depends on (JSON-able).
    build: module-level function ``build(item) -> (arrays dict, meta dict)``; raises
        Cad2ScanError for a bad source.
    args: extra JSON-able arguments for ``build``.
    """

    key: str
    source: str
    source_files: tuple[str, ...]
    record_path: str
    arrays: tuple[tuple[str, str], ...]
    settings: dict
    build: Callable
    args: tuple = ()

    @property
    def folder(self) -> Path:
        return Path(self.record_path).parent

    def array_path(self, name: str) -> Path:
        return self.folder / dict(self.arrays)[name]


@dataclass
class ItemResult:
    key: str
    status: str  # built | reused | failed
    record: dict | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- report
@dataclass
class PrepareReport:
    """What one prepare stage did: counts, bad sources (skipped) and repaired ones (notes)."""

    stage: str
    out_dir: Path
    total: int = 0
    built: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (source, warning)
    seconds: float = 0.0

    def summary_lines(self) -> list[str]:
        lines = [
            f"{self.stage}: {self.total} item(s): {self.built} prepared, {self.reused} up to date, "
            f"{len(self.failed)} bad (skipped) in {self.seconds:.1f} s -> {self.out_dir}"
        ]
        lines += [f"  bad:  {reason}" if reason.startswith(source) else f"  bad:  {source}: {reason}"
                  for source, reason in self.failed]
        lines += [f"  note: {note}" for _, note in self.notes]
        return lines


_COLLECTORS: list[list[PrepareReport]] = []


@contextlib.contextmanager
def collect_reports() -> Iterator[list[PrepareReport]]:
    """Gather the reports of every prepare stage run inside the ``with`` block."""
    reports: list[PrepareReport] = []
    _COLLECTORS.append(reports)
    try:
        yield reports
    finally:
        _COLLECTORS.remove(reports)


def _publish(report: PrepareReport) -> None:
    for reports in _COLLECTORS:
        reports.append(report)


# ----------------------------------------------------------------------------- hashing
def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _base(source: str) -> Path:
    path = Path(source)
    return path if path.is_dir() else path.parent


def fingerprint_source(item: CacheItem) -> dict:
    """Path, total size, combined sha256 and per-file size / mtime / sha256 of the sources."""
    base = _base(item.source)
    files = []
    for name in item.source_files:
        path = Path(name)
        stat = path.stat()
        files.append({"name": os.path.relpath(path, base), "size": stat.st_size,
                      "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path)})
    if len(files) == 1 and Path(item.source_files[0]) == Path(item.source):
        combined = files[0]["sha256"]  # a one-file source: its own checksum
    else:
        combined = hashlib.sha256("".join(f"{f['name']}\0{f['sha256']}\n" for f in files).encode()).hexdigest()
    return {"path": str(Path(item.source).resolve()), "size": sum(f["size"] for f in files),
            "sha256": combined, "files": files}


def _compare_source(item: CacheItem, recorded: dict, deep: bool) -> str:
    """'same', 'changed' or 'unsure' (stats differ only in mtime/path: hash to decide)."""
    try:
        files = recorded["files"]
        base = _base(item.source)
        names = [os.path.relpath(Path(name), base) for name in item.source_files]
        if [f["name"] for f in files] != names:
            return "changed"
        verdict = "same" if recorded["path"] == str(Path(item.source).resolve()) else "unsure"
        for entry, name in zip(files, item.source_files):
            stat = Path(name).stat()
            if stat.st_size != entry["size"]:
                return "changed"
            if stat.st_mtime_ns != entry["mtime_ns"]:
                verdict = "unsure"
        if not deep:
            return verdict
        same = all(sha256_file(name) == entry["sha256"] for entry, name in zip(files, item.source_files))
        return "same" if same else "changed"
    except (KeyError, TypeError, OSError):
        return "changed"


def _arrays_intact(item: CacheItem, record: dict, deep: bool) -> bool:
    try:
        arrays = record["arrays"]
        if sorted(arrays) != sorted(name for name, _ in item.arrays):
            return False
        for name, entry in arrays.items():
            path = item.array_path(name)
            if path.stat().st_size != entry["size"]:
                return False
            if deep and sha256_file(path) != entry["sha256"]:
                return False
        return True
    except (KeyError, TypeError, OSError):
        return False


def _normalised(settings: dict) -> dict:
    return json.loads(json.dumps(settings))


def read_record(path: str | Path) -> dict | None:
    """An item's record, or None when absent or unreadable (a half-written item)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def check_item(item: CacheItem, deep: bool = False) -> tuple[str, dict | None]:
    """('done' | 'failed' | 'unsure' | 'redo', record).

    'failed': a bad source already reported, unchanged since. 'unsure': only the sources'
    mtimes or paths differ; hashing decides (see :func:`_process`).
    """
    record = read_record(item.record_path)
    if (record is None or record.get("version") != CACHE_VERSION or record.get("key") != item.key
            or record.get("settings") != _normalised(item.settings)
            or record.get("status") not in ("done", "failed")):
        return "redo", None
    source = _compare_source(item, record.get("source") or {}, deep)
    if source == "changed":
        return "redo", None
    if record["status"] == "done" and not _arrays_intact(item, record, deep):
        return "redo", None
    if source == "unsure":
        return "unsure", record
    return record["status"], record


# ----------------------------------------------------------------------------- building
def _save_array(path: Path, array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return {"file": path.name, "shape": list(array.shape), "dtype": str(array.dtype), "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def _write_record(item: CacheItem, record: dict) -> None:
    atomic_write_text(item.record_path, json.dumps(record, indent=1))


def _process(task: tuple[CacheItem, bool]) -> ItemResult:
    """Worker: confirm an 'unsure' item by hashing, else (re)build it."""
    item, recheck = task
    if recheck:
        state, record = check_item(item, deep=True)
        if state in ("done", "failed"):  # same content, new mtime or path: refresh the record
            record["source"] = fingerprint_source(item)
            _write_record(item, record)
            if state == "failed":
                return ItemResult(item.key, "failed", record, record.get("error", ""), record.get("notes", []))
            return ItemResult(item.key, "reused", record, notes=record.get("notes", []))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(item.record_path)  # from here on the item counts as not done
    record = {"version": CACHE_VERSION, "key": item.key, "settings": _normalised(item.settings)}
    try:
        record["source"] = fingerprint_source(item)
    except OSError as error:
        return ItemResult(item.key, "failed", error=f"{item.source}: cannot read source ({error.strerror or error})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arrays, meta = item.build(item)
            error = ""
        except Cad2ScanError as exc:  # a bad source: remembered until it changes
            arrays, meta, error = {}, {}, str(exc)
        except Exception as exc:  # noqa: BLE001 - an unexpected failure on one item must not end the run
            where = traceback.extract_tb(exc.__traceback__)[-1]
            at = f"{Path(where.filename).name}:{where.lineno}"
            reason = f"{item.source}: internal error {type(exc).__name__}: {exc} (at {at})"
            return ItemResult(item.key, "failed", error=reason)
    notes = list(dict.fromkeys(str(w.message) for w in caught))
    record.update(notes=notes, meta=meta, error=error or None)
    if error:
        record.update(status="failed", arrays={})
        _write_record(item, record)
        return ItemResult(item.key, "failed", record, error, notes)
    record["arrays"] = {name: _save_array(item.array_path(name), arrays[name]) for name, _ in item.arrays}
    record["status"] = "done"
    _write_record(item, record)
    return ItemResult(item.key, "built", record, notes=notes)


# ----------------------------------------------------------------------------- locking, sweeping
@contextlib.contextmanager
def cache_lock(folder: Path) -> Iterator[None]:
    """Hold an advisory lock on ``folder`` (wait for another process holding it)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    with open(folder / ".prepare.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("waiting for another process that is preparing %s", folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sweep_temporary_files(folder: Path) -> int:
    """Remove temporary files left by an interrupted atomic write (``.<name>.*.tmp``)."""
    removed = 0
    for path in folder.rglob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


# ----------------------------------------------------------------------------- running
@contextlib.contextmanager
def _worker_environment() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in _WORKER_ENV}
    os.environ.update(_WORKER_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_tasks(tasks: list[tuple[CacheItem, bool]], workers: int, bar: tqdm) -> list[ItemResult]:
    """Run tasks in ``workers`` processes (the platform's default start method), or inline."""
    results = []
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            results.append(_process(task))
            bar.update()
        return results
    context = multiprocessing.get_context()
    with _worker_environment(), ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        pending = {pool.submit(_process, task): task for task in tasks}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item = pending.pop(future)[0]
                    try:
                        results.append(future.result())
                    except BrokenProcessPool:
                        results.append(ItemResult(item.key, "failed", error=(
                            f"{item.source}: a worker process ended abruptly (killed, out of memory, or a script "
                            "without `if __name__ == '__main__':` under the spawn start method); re-run to retry")))
                    bar.update()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results


def run_items(items: list[CacheItem], stage: str, out_dir: Path, *, workers: int = 1,
              progress: bool = True, verify: bool = False) -> tuple[dict[str, dict], PrepareReport]:
    """Bring every item up to date; returns ({key: record} of usable items, report).

    Items that are up to date are not touched; the others are built in ``workers``
    processes with a progress bar. Bad sources are logged, listed in the report and
    skipped; a ``manifest.json`` in ``out_dir`` lists every item's record summary.
    """
    started = time.perf_counter()
    report = PrepareReport(stage=stage, out_dir=Path(out_dir), total=len(items))
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise Cad2ScanError(f"{stage}: two sources map to the same cache item {duplicate!r}")
    results: dict[str, ItemResult] = {}
    with cache_lock(Path(out_dir)):
        swept = sweep_temporary_files(Path(out_dir))
        if swept:
            log.info("%s: removed %d temporary file(s) left by an interrupted run", stage, swept)
        tasks = []
        for item in items:
            state, record = check_item(item, deep=verify)
            if state == "done":
                results[item.key] = ItemResult(item.key, "reused", record, notes=record.get("notes", []))
            elif state == "failed":
                results[item.key] = ItemResult(item.key, "failed", record, record.get("error") or "",
                                               record.get("notes", []))
            else:
                tasks.append((item, state == "unsure"))
        bar = tqdm(total=len(tasks), desc=stage, unit="item", disable=not progress or not tasks, dynamic_ncols=True)
        for result in _run_tasks(tasks, workers, bar):
            results[result.key] = result
        bar.close()
        _write_manifest(Path(out_dir), stage, items, results)

    records = {}
    for item in items:
        result = results[item.key]
        if result.status == "failed":
            report.failed.append((item.source, result.error or "unknown error"))
        else:
            records[item.key] = result.record
            report.built += result.status == "built"
            report.reused += result.status == "reused"
        report.notes += [(item.source, note) for note in result.notes]
    report.seconds = time.perf_counter() - started
    for source, reason in report.failed:
        log.warning("skipped %s", reason if reason.startswith(source) else f"{source}: {reason}")
    log.info("%s", report.summary_lines()[0])
    _publish(report)
    return records, report


def _write_manifest(out_dir: Path, stage: str, items: list[CacheItem], results: dict[str, ItemResult]) -> None:
    """Merge this run's items into ``out_dir/manifest.json`` (items of earlier runs are kept
    while their records exist)."""
    path = out_dir / "manifest.json"
    previous = read_record(path) or {}
    entries = {e["key"]: e for e in previous.get("items", []) if isinstance(e, dict) and "key" in e
               and previous.get("version") == CACHE_VERSION}
    for item in items:
        result = results[item.key]
        source = (result.record or {}).get("source") or {"path": str(Path(item.source).resolve())}
        entries[item.key] = {
            "key": item.key, "status": "failed" if result.status == "failed" else "done",
            "record": os.path.relpath(item.record_path, out_dir),
            "source": source.get("path"), "size": source.get("size"), "sha256": source.get("sha256"),
            "error": result.error or None,
        }
    kept = [e for k, e in sorted(entries.items()) if (out_dir / e["record"]).is_file() or k in results]
    manifest = {"version": CACHE_VERSION, "stage": stage, "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "items": kept}
    atomic_write_text(path, json.dumps(manifest, indent=1))
