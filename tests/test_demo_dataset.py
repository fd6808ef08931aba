"""``ensure_demo_dataset`` reuses a finished dataset of the current format and regenerates older ones."""

import json

import cad2scan.synth.generate as generate
from cad2scan.demo import ensure_demo_dataset


def _fake_generator(calls):
    def fake(out, seed=0, progress=True, **kwargs):
        calls.append((out, seed, kwargs))
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text(json.dumps({"format_version": generate.FORMAT_VERSION}))
    return fake


def test_a_current_dataset_is_reused_and_an_older_format_is_generated_again(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(generate, "generate_demo_dataset", _fake_generator(calls))
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"format_version": generate.FORMAT_VERSION - 1}))
    (data / "stale.txt").write_text("from the old format")
    ensure_demo_dataset(tmp_path, seed=3, smoke=True, progress=False)
    assert len(calls) == 1 and calls[0][1] == 3 and calls[0][2]["train_rooms"] == 2
    assert not (data / "stale.txt").exists()
    ensure_demo_dataset(tmp_path, seed=3, smoke=True, progress=False)
    assert len(calls) == 1  # reused


def test_a_missing_or_unreadable_manifest_means_generate(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(generate, "generate_demo_dataset", _fake_generator(calls))
    ensure_demo_dataset(tmp_path, seed=0, progress=False)
    assert len(calls) == 1
    (tmp_path / "data" / "manifest.json").write_text("{not json")
    ensure_demo_dataset(tmp_path, seed=0, progress=False)
    assert len(calls) == 2
