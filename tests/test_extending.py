"""An algorithm defined in a file outside the package (docs/examples/fo_reinforce.py, the file docs/extending.md
shows) gets every entry point a built-in has, without editing metarl: train, --resume, --seed 0 1, evaluate,
plot, metarl.load(DIR).adapt(...).act(...), callbacks, and the Ray sampler."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import metarl
from tests.conftest import REPO, requires_extra

EXAMPLE = REPO / "docs" / "examples" / "fo_reinforce.py"
ALGO = "fo_reinforce:fo-reinforce"
TINY = ["--env", "metarl/Navigation2D-v0", "--meta-batch-size", "2", "--episodes-per-task", "2", "--max-episode-steps",
        "5", "--hidden-sizes", "8", "--metatest-tasks", "2", "--metatest-steps", "1", "--no-progress"]


def _metarl(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The console command, run where the user's file is."""
    command = shutil.which("metarl") or str(Path(sys.executable).with_name("metarl"))
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def _scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[int, float] = {}
    for path in sorted(logdir.glob("events*")):
        events = EventAccumulator(str(path))
        events.Reload()
        if tag in events.Tags()["scalars"]:
            out.update({e.step: e.value for e in events.Scalars(tag)})
    return sorted(out.items())


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    return tmp_path


def test_the_docs_page_shows_the_example_file_as_it_is():
    page = (REPO / "docs" / "extending.md").read_text()
    assert EXAMPLE.read_text().strip() in page, "docs/extending.md must include docs/examples/fo_reinforce.py verbatim"


@pytest.mark.slow
def test_an_outside_algorithm_trains_resumes_evaluates_plots_and_loads(workdir, monkeypatch):
    whole = _metarl(workdir, "train", "--algo", ALGO, *TINY, "--iterations", "3", "--logdir", "whole")
    assert whole.returncode == 0, whole.stderr
    part = _metarl(workdir, "train", *TINY, "--iterations", "2", "--logdir", "part", "--algo", ALGO)
    assert part.returncode == 0, part.stderr
    resumed = _metarl(workdir, "train", "--resume", "part", "--iterations", "3", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    tag = "rollout/return_after_adaptation"
    assert len(_scalars(workdir / "whole", tag)) == 3
    assert _scalars(workdir / "part", tag) == _scalars(workdir / "whole", tag), "resume continues the exact curve"
    assert json.loads((workdir / "part" / "metatest.json").read_text())["algo"] == ALGO

    evaluated = _metarl(workdir, "evaluate", "whole", "--tasks", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "adaptation steps" in evaluated.stdout
    plotted = _metarl(workdir, "plot", "whole", "-o", "curves.png")
    assert plotted.returncode == 0, plotted.stderr
    assert (workdir / "curves.png").stat().st_size > 1000
    elsewhere = _metarl(workdir.parent, "evaluate", str(workdir / "whole"), "--tasks", "2")
    assert elsewhere.returncode == 2 and "cannot import module 'fo_reinforce'" in elsewhere.stderr
    assert "Traceback" not in elsewhere.stderr

    monkeypatch.chdir(workdir)
    monkeypatch.syspath_prepend(str(workdir))
    policy = metarl.load(workdir / "whole")
    assert type(policy).__name__ == "MAMLPolicy" and metarl.load_policy(workdir / "whole").algorithm.name == ALGO
    env = gym.make("metarl/Navigation2D-v0", task={"goal": (0.3, -0.2)}, max_episode_steps=5)
    adapted = policy.adapt(env, episodes=2, seed=0)
    obs, _ = env.reset(seed=1)
    action = adapted.act(obs)
    assert env.action_space.contains(np.asarray(action, dtype=np.float32))
    again = metarl.load(workdir / "whole").adapt(env, episodes=2, seed=0).act(obs)
    np.testing.assert_array_equal(action, again)


@pytest.mark.slow
def test_an_outside_algorithm_runs_several_seeds_and_a_python_callback(workdir, monkeypatch):
    seeds = _metarl(workdir, "train", "--algo", ALGO, "--seed", "0", "1", *TINY, "--iterations", "1", "--logdir", "ms")
    assert seeds.returncode == 0, seeds.stderr
    summary = json.loads((workdir / "ms" / "metatest_summary.json").read_text())
    assert summary["seeds"] == [0, 1] and all((workdir / "ms" / f"seed_{s}" / "checkpoint.pt").is_file() for s in (0, 1))

    monkeypatch.chdir(workdir)
    monkeypatch.syspath_prepend(str(workdir))

    class StopAfterTwo(metarl.BaseCallback):
        def __init__(self) -> None:
            self.seen: list[int] = []

        def on_iteration_end(self, state) -> bool:
            self.seen.append(state.iteration)
            return state.iteration < 2

    stop = StopAfterTwo()
    logdir = metarl.train(ALGO, "metarl/Navigation2D-v0", logdir=workdir / "cb", iterations=5, meta_batch_size=2,
                          episodes_per_task=2, max_episode_steps=5, hidden_sizes=(8,), metatest_tasks=2,
                          metatest_steps=1, callbacks=[stop])
    assert stop.seen == [1, 2], "the run stops at the iteration the callback returns False"
    result = json.loads((logdir / "metatest.json").read_text())
    assert result["iterations"] == 2 and metarl.load_run(logdir).name == ALGO
    from metarl.checkpoint import load_checkpoint

    assert load_checkpoint(logdir)["iteration"] == 2, "the stopped state is checkpointed"


@pytest.mark.slow
@requires_extra("ray")
def test_an_outside_algorithm_samples_on_ray_workers_with_the_same_curve(workdir):
    local = _metarl(workdir, "train", "--algo", ALGO, *TINY, "--iterations", "2", "--logdir", "local")
    assert local.returncode == 0, local.stderr
    ray = _metarl(workdir, "train", "--algo", ALGO, *TINY, "--iterations", "2", "--logdir", "ray", "--sampler", "ray",
                  "--num-workers", "2")
    assert ray.returncode == 0, ray.stderr
    tag = "rollout/return_after_adaptation"
    assert _scalars(workdir / "ray", tag) == _scalars(workdir / "local", tag)
