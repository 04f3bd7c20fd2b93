"""Benchmark evaluation protocols (metarl.protocols): Meta-World's, against Meta-World's own function."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

from metarl.cli import main
from metarl.policy import AdaptedPolicy, MetaPolicy
from metarl import protocols
from metarl.protocols import MetaWorldProtocol, metaworld_evaluation
from tests.conftest import requires_extra
from tests.test_entry_points import TINY

ML1 = "metarl/MetaWorldML1-v0"


class _ShortProtocol(MetaWorldProtocol):
    def __init__(self, adaptation_episodes=2, evaluation_episodes=2, max_episode_steps=12, tasks_per_class=2):
        super().__init__(adaptation_episodes, evaluation_episodes, max_episode_steps, tasks_per_class or 2)


def _sweep(obs: np.ndarray, t: int) -> np.ndarray:
    """A deterministic, non-adaptive controller: the hand follows a slow loop through reach's goal box, so some
    goals are met early, some late and some never within a short horizon."""
    target = np.array([0.1 * np.sin(0.11 * t), 0.82 + 0.08 * np.sin(0.07 * t), 0.15 + 0.12 * np.sin(0.05 * t)])
    return np.concatenate([np.clip(10.0 * (target - obs[:3]), -1.0, 1.0), [0.0]])


class _SweepActor(AdaptedPolicy):
    def reset(self) -> None:
        self.t = 0

    def act(self, obs, sample=False):
        action = _sweep(np.asarray(obs), self.t)
        self.t += 1
        return action


class _SweepPolicy(MetaPolicy):
    """The controller behind metarl's MetaPolicy interface: 'adapting' runs the episodes and changes nothing."""

    def __init__(self, env: gym.Env):
        algorithm = SimpleNamespace(sampler=SimpleNamespace(env=env, horizon=500), name="sweep",
                                    cfg=SimpleNamespace(env=ML1, env_kwargs={}))
        super().__init__(algorithm)
        self.adaptation_episodes = 0

    def _adapt(self, env, episodes, seeds, generator, **kwargs):
        actor = _SweepActor(self, generator)
        self.adaptation_episodes += len(self.collect(env, actor, seeds[:episodes])) if episodes else 0
        return actor


class _SweepAgent:
    """The same controller as a Meta-World ``MetaLearningAgent`` (one env)."""

    def __init__(self):
        self.t, self.adapt_steps = 0, 0

    def init(self):
        self.t = 0

    def adapt_action(self, obs):
        action = _sweep(obs[0], self.t)
        self.t += 1
        self.adapt_steps += 1
        return action[None], {}

    def step(self, timestep):
        if timestep.terminated[0] or timestep.truncated[0]:
            self.t = 0

    def adapt(self):
        pass

    def eval_action(self, obs):
        action = _sweep(obs[0], self.t)
        self.t += 1
        return action[None]

    def reset(self, env_mask):
        if env_mask[0]:
            self.t = 0


@requires_extra("metaworld")
def test_metaworld_protocol_equals_meta_worlds_own_evaluation():
    from metaworld.evaluation import metalearning_evaluation

    n_tasks, horizon, adapt_eps, eval_eps = 6, 40, 2, 3
    env = gym.make(ML1, max_episode_steps=horizon)
    policy = _SweepPolicy(env)
    ours = metaworld_evaluation(policy, protocol=MetaWorldProtocol(adaptation_episodes=adapt_eps,
                                                                   evaluation_episodes=eval_eps,
                                                                   max_episode_steps=horizon,
                                                                   tasks_per_class=n_tasks))
    assert ours["n_tasks"] == n_tasks and policy.adaptation_episodes == n_tasks * adapt_eps
    # a non-vacuous comparison: some evaluation episodes succeed (ending early), some do not
    assert 0.0 < ours["success_rate"] < 1.0
    # Meta-World's function, one env of the class (meta_batch_size 1), every one of the first n test goals once
    envs = gym.make_vec("Meta-World/ML1-test", env_name="reach-v3", seed=0, meta_batch_size=1,
                        total_tasks_per_cls=n_tasks, max_episode_steps=horizon)
    agent = _SweepAgent()
    success, mean_return, by_class = metalearning_evaluation(agent, envs, num_evals=n_tasks, adaptation_steps=1,
                                                             adaptation_episodes=adapt_eps,
                                                             evaluation_episodes=eval_eps)
    envs.close()
    assert agent.adapt_steps == n_tasks * adapt_eps * horizon  # adaptation episodes run to the horizon
    assert ours["success_rate"] == pytest.approx(success, abs=1e-12)
    assert ours["success_rate_by_class"]["reach-v3"] == pytest.approx(by_class["reach-v3"], abs=1e-12)
    assert ours["return"] == pytest.approx(mean_return, rel=1e-6)  # Meta-World sums rewards in float32


@requires_extra("metaworld")
@pytest.mark.parametrize("algo", ["maml-trpo", "rl2-ppo", "pearl"])
def test_metatest_protocol_metaworld_runs_after_training_and_from_metarl_evaluate(algo, tmp_path, capsys,
                                                                                   monkeypatch):
    # Meta-World's settings (50 tasks x 13 episodes of 500 steps) take minutes: the same code on a smaller protocol
    monkeypatch.setattr(protocols, "MetaWorldProtocol", _ShortProtocol)
    logdir = tmp_path / algo
    args = ["train", "--algo", algo, "--env", ML1, "--max-episode-steps", "10", "--iterations", "1",
            "--no-progress", "--logdir", str(logdir), *TINY[algo], "--metatest-protocol", "metaworld"]
    assert main(args) == 0
    protocol = json.loads((logdir / "metatest.json").read_text())["protocol"]
    assert protocol["protocol"] == "metaworld" and protocol["adaptation_episodes"] == 2
    assert protocol["n_tasks"] == 2 and set(protocol["success_rate_by_class"]) == {"reach-v3"}
    assert 0.0 <= protocol["success_rate"] <= 1.0
    capsys.readouterr()
    out_json = tmp_path / "protocol.json"
    assert main(["evaluate", str(logdir), "--protocol", "metaworld", "--tasks", "1", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "Meta-World protocol" in printed and "reach-v3" in printed
    again = json.loads(out_json.read_text())
    assert again["n_tasks"] == 1 and again["tasks"] == protocol["tasks"][:1]
    assert again["success_rate_by_task"] == protocol["success_rate_by_task"][:1]  # same seed, same adaptation


@requires_extra("metaworld")
def test_metaworld_protocol_refuses_a_family_without_test_tasks_and_bad_settings():
    env = gym.make("metarl/Navigation2D-v0")
    policy = _SweepPolicy(env)
    policy.algorithm.cfg = SimpleNamespace(env="metarl/Navigation2D-v0", env_kwargs={})
    with pytest.raises(ValueError, match="no test tasks with a success flag"):
        metaworld_evaluation(policy)
    with pytest.raises(ValueError, match="adaptation_episodes must be a positive integer"):
        metaworld_evaluation(policy, protocol=MetaWorldProtocol(adaptation_episodes=0))


@requires_extra("metaworld")
def test_evaluate_video_of_a_meta_world_run_shows_a_test_task_before_and_after_adaptation(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    from tests.test_evaluate_plot_seeds import _headless_env

    logdir = tmp_path / "ml1"
    assert main(["train", "--algo", "maml-trpo", "--env", ML1, "--max-episode-steps", "6", "--iterations", "1",
                 "--no-progress", "--logdir", str(logdir), *TINY["maml-trpo"]]) == 0
    out = tmp_path / "reach.gif"
    done = subprocess.run([sys.executable, "-m", "metarl.cli", "evaluate", str(logdir), "--tasks", "1", "--video",
                           str(out)], capture_output=True, text=True, timeout=300, env=_headless_env())
    assert done.returncode == 0, done.stderr
    gif = Image.open(out)
    assert gif.n_frames == 7, "two episodes of 6 steps plus their first frames, every second frame kept"
    assert gif.size[0] > 100 and len(np.unique(np.asarray(gif.convert("L")))) > 10  # a rendered scene, not a blank frame
