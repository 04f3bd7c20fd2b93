"""Every algorithm on every registered family, two meta-iterations, through the console command a user runs."""

from __future__ import annotations

import json

import pytest

import metarl
from metarl.cli import main

RL_ALGORITHMS = ("maml-trpo", "maml-ppo", "rl2-ppo")
TINY = {
    "maml-trpo": ["--meta-batch-size", "2", "--episodes-per-task", "2", "--hidden-sizes", "8", "--metatest-tasks", "2",
                  "--metatest-steps", "1", "--cg-iters", "2"],
    "maml-ppo": ["--meta-batch-size", "2", "--episodes-per-task", "2", "--hidden-sizes", "8", "--metatest-tasks", "2",
                 "--metatest-steps", "1", "--ppo-epochs", "2"],
    "rl2-ppo": ["--meta-batch-size", "2", "--num-minibatches", "1", "--hidden-size", "8", "--metatest-tasks", "2",
                "--episodes-per-trial", "2"],
}


@pytest.mark.parametrize("env", metarl.list_families())
@pytest.mark.parametrize("algo", RL_ALGORITHMS)
def test_every_algorithm_trains_on_every_family_from_the_command_line(algo, env, tmp_path, capsys):
    horizon = ["--env-kwargs", "n=5"] if env == "metarl/BernoulliBandit-v0" else ["--max-episode-steps", "5"]
    logdir = tmp_path / "run"
    code = main(["train", "--algo", algo, "--env", env, "--iterations", "2", "--logdir", str(logdir),
                 "--no-progress", *horizon, *TINY[algo]])
    err = capsys.readouterr().err
    assert code == 0, err
    result = json.loads((logdir / "metatest.json").read_text())
    assert result["algo"] == algo and result["iterations"] == 2
