"""``--sampler ray``: the local sampler's episodes and curves on Ray workers, a killed or hung worker replaced
without changing the run, a family that keeps failing stopping the run with its traceback (``metarl[ray]``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metarl.checkpoint import load_checkpoint
from metarl.cli import main
from tests.conftest import needs_extra

pytestmark = needs_extra("ray")

FAMILY = "tests.ray_families:FaultyLine-v0"


def _curves(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged training scalar by step, over all the run's event files (a resumed run adds one); timings
    and the meta-test (written at each process's end) left out."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, dict[int, float]] = {}
    for path in sorted(logdir.glob("events*")):
        events = EventAccumulator(str(path))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            if not tag.startswith(("time/", "metatest/")):
                curves.setdefault(tag, {}).update({e.step: e.value for e in events.Scalars(tag)})
    return {tag: sorted(values.items()) for tag, values in curves.items()}


def _metatest(logdir: Path) -> dict:
    result = json.loads((logdir / "metatest.json").read_text())
    return {k: v for k, v in result.items() if k not in ("logdir", "train_seconds")}


def _train(logdir: Path, args: list[str], *extra: str) -> int:
    return main(["train", *args, "--logdir", str(logdir), "--no-progress", *extra])


RUNS = {
    "maml-trpo": ["--algo", "maml-trpo", "--env", "metarl/Navigation2D-v0", "--iterations", "2",
                  "--meta-batch-size", "4", "--episodes-per-task", "4", "--metatest-tasks", "3"],
    "rl2-ppo": ["--algo", "rl2-ppo", "--env", "metarl/BernoulliBandit-v0", "--iterations", "2",
                "--meta-batch-size", "8", "--num-minibatches", "2", "--metatest-tasks", "3"],
    "pearl": ["--algo", "pearl", "--env", "metarl/Navigation2D-v0", "--iterations", "2", "--train-tasks", "6",
              "--tasks-per-iteration", "3", "--meta-batch-size", "2", "--initial-episodes", "2",
              "--batch-size", "16", "--context-size", "16", "--gradient-steps", "2", "--metatest-tasks", "3"],
}


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_ray_sampler_gives_the_local_samplers_curves(algo, tmp_path):
    assert _train(tmp_path / "local", RUNS[algo]) == 0
    assert _train(tmp_path / "ray", RUNS[algo], "--sampler", "ray", "--num-workers", "2") == 0
    assert _curves(tmp_path / "ray") == _curves(tmp_path / "local")
    assert _metatest(tmp_path / "ray") == _metatest(tmp_path / "local")


LINE = ["--algo", "maml-trpo", "--env", FAMILY, "--iterations", "2", "--meta-batch-size", "4",
        "--episodes-per-task", "2", "--metatest-tasks", "2", "--checkpoint-every", "1"]


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_a_dead_or_hung_worker_is_replaced_and_the_curve_is_unchanged(fault, tmp_path):
    assert _train(tmp_path / "local", LINE) == 0
    marker = tmp_path / "marker"
    assert _train(tmp_path / "ray", [*LINE, "--env-kwargs", f"fault={fault}", f"marker={marker}"],
                  "--sampler", "ray", "--num-workers", "2", "--worker-timeout", "5") == 0
    assert marker.exists(), "the fault happened"
    assert _curves(tmp_path / "ray") == _curves(tmp_path / "local")
    assert _metatest(tmp_path / "ray") == _metatest(tmp_path / "local")


def test_a_family_that_keeps_failing_stops_the_run_with_its_traceback(tmp_path, capsys):
    """Training on the train tasks passes; the meta-test's poison task raises on every worker it is given."""
    logdir = tmp_path / "run"
    code = _train(logdir, [*LINE, "--env-kwargs", "fault=raise"], "--sampler", "ray", "--num-workers", "2",
                  "--worker-retries", "1")
    err = capsys.readouterr().err
    assert code == 1
    assert "failed 2 times" in err and "0.75" in err and "ValueError: FaultyLine cannot step" in err
    assert "Traceback" in err and "tests/ray_families.py" in err  # the worker's own traceback
    state = load_checkpoint(logdir / "checkpoint.pt")
    assert state["iteration"] == 2  # every meta-iteration's checkpoint, intact


def test_workers_that_do_not_start_stop_the_run_with_a_one_line_error(tmp_path, capsys, monkeypatch):
    """Starting a worker has its own limit (not ``--worker-timeout``, which counts sampling only)."""
    import metarl.ray_sampler

    monkeypatch.setattr(metarl.ray_sampler, "WORKER_START_TIMEOUT", 0.001)
    assert _train(tmp_path / "run", RUNS["maml-trpo"], "--sampler", "ray", "--num-workers", "2") == 1
    err = capsys.readouterr().err
    assert "did not start within 0.001 s" in err and "free CPUs" in err and "Traceback" not in err


def test_ray_settings_errors(tmp_path, capsys):
    assert _train(tmp_path / "a", RUNS["maml-trpo"], "--sampler", "ray", "--num-workers", "0") == 2
    assert "num_workers" in capsys.readouterr().err
    # an address where no cluster answers: a one-line error at once (ray.init alone would wait minutes)
    assert _train(tmp_path / "b", RUNS["maml-trpo"], "--sampler", "ray", "--ray-address", "127.0.0.1:1") == 2
    err = capsys.readouterr().err
    assert "no Ray cluster answers at 127.0.0.1:1" in err and "Traceback" not in err



def test_resume_may_change_the_sampler_and_keeps_the_curve(tmp_path):
    """A run started on Ray and resumed with the local sampler (the sampler settings are runtime settings)."""
    one = [a if a != "2" else "1" for a in RUNS["maml-trpo"]]  # --iterations 1
    assert _train(tmp_path / "mixed", one, "--sampler", "ray", "--num-workers", "2") == 0
    assert main(["train", "--resume", str(tmp_path / "mixed"), "--iterations", "2", "--sampler", "local",
                 "--no-progress"]) == 0
    assert _train(tmp_path / "local", RUNS["maml-trpo"]) == 0
    assert _curves(tmp_path / "mixed") == _curves(tmp_path / "local")
    assert _metatest(tmp_path / "mixed") == _metatest(tmp_path / "local")


def test_a_run_joins_an_existing_cluster_with_ray_address(tmp_path):
    """A Ray instance started by another process (a cluster's head, here on this machine); the run joins it with
    --ray-address and gives the local sampler's curve. Both run as subprocesses: this process may hold its own."""
    import os
    import subprocess
    import sys

    # Ray >= 2.59 gives local clusters token authentication: a real cluster's users set RAY_AUTH_TOKEN; here
    # both processes run without it
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        [sys.executable, "-c", "import ray, sys; ray.init(num_cpus=2, include_dashboard=False, logging_level='ERROR');"
         " print(ray.get_runtime_context().gcs_address, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        address = head.stdout.readline().strip()
        assert ":" in address, address
        run = subprocess.run([sys.executable, "-m", "metarl.cli", "train", *RUNS["maml-trpo"], "--logdir",
                              str(tmp_path / "joined"), "--no-progress", "--sampler", "ray", "--num-workers", "2",
                              "--ray-address", address], capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
    finally:
        head.stdin.close()
        head.wait(timeout=60)
    assert _train(tmp_path / "local", RUNS["maml-trpo"]) == 0
    assert _curves(tmp_path / "joined") == _curves(tmp_path / "local")
