"""The benchmark scripts run (smoke checks; the numbers themselves are recorded in docs/benchmarks.md)."""

from __future__ import annotations

import json

from tests.conftest import load_script


def test_thread_benchmark_measures_idle_and_loaded(tmp_path):
    module = load_script("benchmark_threads")
    out = tmp_path / "threads.json"
    rows = module.main(["--threads", "1", "--iterations", "1", "--json", str(out)])
    assert set(rows[1]) == {"idle", "loaded"} and all(v > 0 for v in rows[1].values())
    assert json.loads(out.read_text())["1"]["idle"] == rows[1]["idle"]
