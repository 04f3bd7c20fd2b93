"""A user's mistakes end in one line that names the setting and the fix, through the console command."""

from __future__ import annotations

import errno
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch

from metarl.checkpoint import CheckpointError
from metarl.cli import main
from metarl.registry import load_run
from metarl.sampler import EpisodeSampler
from metarl.training import NonFiniteError

TINY = ["--meta-batch-size", "2", "--episodes-per-task", "2", "--max-episode-steps", "5", "--hidden-sizes", "8",
        "--metatest-tasks", "2", "--metatest-steps", "1", "--cg-iters", "2", "--no-progress"]


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("argv,message", [
    (["--env-kwargs", "goal_low=abc"], "env kwarg goal_low of metarl/Navigation2D-v0 must be a number, got 'abc'"),
    (["--env-kwargs", "max_action=x"], "env kwarg max_action of metarl/Navigation2D-v0 must be a number"),
    (["--env-kwargs", "goal_radius=1"], "takes no kwarg 'goal_radius'"),
    (["--env", "metarl/HalfCheetahDir-v0", "--env-kwargs", "ctrl_cost_weight=nan"],
     "env kwarg ctrl_cost_weight of metarl/HalfCheetahDir-v0 must be a finite number, got nan"),
    (["--env", "metarl/AntVel-v0", "--env-kwargs", "healthy_z_range=(1.0,0.2)"],
     "healthy_z_range of metarl/AntVel-v0 must be an increasing"),
    (["--init-std", "inf"], "init_std must be a positive number, got inf"),
    (["--cg-damping", "-1"], "cg_damping must be a non-negative number, got -1.0"),
    (["--seed", "-1"], "seed must be an integer in [0, 4294967295], got -1"),
    (["--env", "metarl/NoSuchFamily-v0"], "unknown env id 'metarl/NoSuchFamily-v0'"),
    (["--algo", "maml-trpo", "--env", "no_such_module:Thing-v0"], "cannot import module 'no_such_module'"),
])
def test_bad_settings_are_refused_up_front_naming_them(tmp_path, capsys, argv, message):
    code, err = run(capsys, "train", *TINY, "--iterations", "1", "--logdir", str(tmp_path / "run"), *argv)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists(), "nothing written for a run that could not start"


def test_bad_config_file_and_unknown_setting(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("inner_rate: 0.1\n")
    code, err = run(capsys, "train", "--config", str(bad), "--logdir", str(tmp_path / "a"))
    assert code == 2 and "unknown setting 'inner_rate'" in err
    bad.write_text("[1, 2\n")
    code, err = run(capsys, "train", "--config", str(bad), "--logdir", str(tmp_path / "a"))
    assert code == 2 and "not valid YAML" in err


def test_logdir_that_is_a_file_or_cannot_be_written(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "file"
    afile.write_text("x")
    code, err = run(capsys, "train", *TINY, "--iterations", "1", "--logdir", str(afile))
    assert code == 2 and "is a file, not a directory" in err
    code, err = run(capsys, "train", *TINY, "--iterations", "1", "--logdir", str(afile / "sub"))
    assert code == 2 and "--logdir" in err

    import metarl.rundir as rundir

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(rundir.os, "replace", denied)
    code, err = run(capsys, "train", *TINY, "--iterations", "1", "--logdir", str(tmp_path / "ro"))
    assert code == 2 and "permission denied" in err and "writable --logdir" in err


def test_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    logdir = tmp_path / "run"
    assert main(["train", *TINY, "--iterations", "1", "--logdir", str(logdir)]) == 0
    import metarl.checkpoint as ckpt

    def full(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(ckpt.torch, "save", full)
    code, err = run(capsys, "train", "--resume", str(logdir), "--iterations", "2", "--no-progress")
    assert code == 2 and "is the disk full?" in err
    monkeypatch.undo()
    assert torch.load(logdir / "checkpoint.pt", weights_only=False)["iteration"] == 1
    assert not list(logdir.glob("*.tmp"))


def test_damaged_and_mismatched_checkpoints(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert main(["train", *TINY, "--iterations", "1", "--logdir", str(logdir)]) == 0
    path = logdir / "checkpoint.pt"
    state = torch.load(path, weights_only=False)
    good = dict(state)
    del state["algorithm"]["policy"]["log_std"]
    torch.save(state, path)
    code, err = run(capsys, "train", "--resume", str(logdir), "--iterations", "2", "--no-progress")
    assert code == 2 and "does not fit the maml-trpo model" in err
    state = dict(good)
    state["algorithm"]["policy"]["log_std"] = torch.zeros(5)
    torch.save(state, path)
    code, err = run(capsys, "train", "--resume", str(logdir), "--iterations", "2", "--no-progress")
    assert code == 2 and "does not fit" in err
    with pytest.raises(CheckpointError, match="does not fit"):
        load_run(logdir)
    # a CRC-corrupt member of the zip container
    torch.save(good, path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    code, err = run(capsys, "train", "--resume", str(logdir), "--iterations", "2", "--no-progress")
    assert code == 2 and ("unreadable" in err or "damaged" in err), err


def test_few_shot_and_rl_runs_resume_and_load_through_one_path(tmp_path, capsys):
    import metarl.fewshot

    sinusoid = tmp_path / "sin"
    assert main(["fewshot", "--algo", "maml", "--dataset", "sinusoid", "--iterations", "2", "--metatest-tasks", "5",
                 "--eval-every", "0", "--logdir", str(sinusoid), "--no-progress"]) == 0
    assert main(["train", "--resume", str(sinusoid), "--iterations", "3", "--no-progress"]) == 0, "one resume path"
    assert load_run(sinusoid).name == "maml"
    rl = tmp_path / "rl"
    assert main(["train", *TINY, "--iterations", "1", "--logdir", str(rl)]) == 0
    with pytest.raises(ValueError, match="is a maml-trpo run .meta-rl., not a few-shot one: load it with metarl.load "
                                         "or metarl.load_policy"):
        metarl.fewshot.load_learner(rl)
    code, err = run(capsys, "fewshot", "--resume", str(rl), "--algo", "maml")
    assert code == 2 and "is a maml-trpo run, not maml" in err


class NaNObservationFamily(gym.Env):
    """A family whose observation becomes NaN at the third step."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Box(-1, 1, shape=(1,), dtype=np.float32)

    def __init__(self, short: bool = False):
        self.t, self.short = 0, short

    def sample_tasks(self, n, rng):
        return list(rng.uniform(size=n - 1 if self.short else n))

    def set_task(self, task):
        self.task = task

    def get_task(self):
        return self.task

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([np.nan if self.t == 3 else 0.0], dtype=np.float32), 0.0, False, False, {}


gym.register("NaNObservationFamily-v0", entry_point=NaNObservationFamily, max_episode_steps=6)


def test_a_family_returning_nan_is_named_not_the_policy():
    sampler = EpisodeSampler("NaNObservationFamily-v0")
    tasks = sampler.sample_tasks(2, np.random.default_rng(0))
    with pytest.raises(NonFiniteError, match="non-finite observation from NaNObservationFamily-v0 at step 2"):
        sampler.sample(lambda obs, g: torch.zeros(*obs.shape[:2], 1), tasks, 2, np.random.default_rng(0))
    short = EpisodeSampler("NaNObservationFamily-v0", {"short": True})
    with pytest.raises(ValueError, match=r"sample_tasks\(3\) returned 2 tasks"):
        short.sample_tasks(3, np.random.default_rng(0))


@pytest.mark.parametrize("action,message", [(np.array([np.nan, 0.0]), "finite"), (0.05, r"shape \(2,\)"),
                                            (np.zeros(3), r"shape \(2,\)")])
def test_navigation_rejects_nan_scalar_and_wrong_shape_actions(action, message):
    env = gym.make("metarl/Navigation2D-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_mujoco_blow_up_returns_finite_values_and_ends_the_episode(monkeypatch):
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

    env = gym.make("metarl/HalfCheetahVel-v0")
    family = env.unwrapped
    env.reset(seed=0)
    family.set_state(family.data.qpos.copy(), family.data.qvel + 1e9)  # QACC explodes on the next step
    original = HalfCheetahEnv.step

    def nan_step(self, action):
        obs, reward, terminated, truncated, info = original(self, action)
        return obs * np.nan, float("nan"), terminated, truncated, info

    monkeypatch.setattr(HalfCheetahEnv, "step", nan_step)
    obs, reward, _, truncated, info = env.step(np.zeros(6, dtype=np.float32))
    assert truncated and info["mujoco_instability"] and np.all(np.isfinite(obs)) and np.isfinite(reward)
