"""Every algorithm on every registered family, two meta-iterations, through the console command a user runs."""

from __future__ import annotations

import json

import pytest

from metarl.cli import main
from tests.conftest import registered_families

RL_ALGORITHMS = ("maml-trpo", "maml-ppo", "rl2-ppo", "rl2-transformer", "pearl")
#: families PEARL cannot run (discrete actions): the command must say so in one line
DISCRETE_FAMILIES = ("metarl/BernoulliBandit-v0", "metarl/TabularMDP-v0")
TINY = {
    "maml-trpo": ["--meta-batch-size", "2", "--episodes-per-task", "2", "--hidden-sizes", "8", "--metatest-tasks", "2",
                  "--metatest-steps", "1", "--cg-iters", "2"],
    "maml-ppo": ["--meta-batch-size", "2", "--episodes-per-task", "2", "--hidden-sizes", "8", "--metatest-tasks", "2",
                 "--metatest-steps", "1", "--ppo-epochs", "2"],
    "rl2-ppo": ["--meta-batch-size", "2", "--num-minibatches", "1", "--hidden-size", "8", "--metatest-tasks", "2",
                "--episodes-per-trial", "2"],
    "rl2-transformer": ["--meta-batch-size", "2", "--num-minibatches", "1", "--transformer-width", "8",
                        "--transformer-layers", "1", "--transformer-heads", "2", "--metatest-tasks", "2",
                        "--episodes-per-trial", "2"],
    "pearl": ["--train-tasks", "3", "--tasks-per-iteration", "2", "--initial-episodes", "1", "--gradient-steps", "2",
              "--meta-batch-size", "2", "--batch-size", "4", "--context-size", "4", "--hidden-sizes", "8",
              "--encoder-hidden-sizes", "8", "--metatest-tasks", "2", "--metatest-episodes", "2",
              "--posterior-episodes", "1"],
}


@pytest.mark.parametrize("env", registered_families())
@pytest.mark.parametrize("algo", RL_ALGORITHMS)
def test_every_algorithm_trains_on_every_family_from_the_command_line(algo, env, tmp_path, capsys):
    horizon = ["--env-kwargs", "n=5"] if env == "metarl/BernoulliBandit-v0" else ["--max-episode-steps", "5"]
    logdir = tmp_path / "run"
    code = main(["train", "--algo", algo, "--env", env, "--iterations", "2", "--logdir", str(logdir),
                 "--no-progress", *horizon, *TINY[algo]])
    err = capsys.readouterr().err
    if algo == "pearl" and env in DISCRETE_FAMILIES:
        assert code == 2 and "pearl needs a continuous (Box) action space" in err and "Traceback" not in err
        return
    assert code == 0, err
    result = json.loads((logdir / "metatest.json").read_text())
    assert result["algo"] == algo and result["iterations"] == 2
