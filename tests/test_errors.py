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


# ---- the last bad answers to bad input (each through the entry point that hit it)

@pytest.mark.parametrize("env_id, kwargs, message", [
    ("metarl/HalfCheetahVel-v0", {"ctrl_cost_weight": float("nan")}, "ctrl_cost_weight of HalfCheetahVelEnv must be a finite"),
    ("metarl/HopperRandParams-v0", {"healthy_z_range": (2.0, 0.7)}, "healthy_z_range .* must be an increasing"),
    ("metarl/HopperRandParams-v0", {"log_scale_limit": 1e3}, r"log_scale_limit .* must be in \(0, 10\]"),
    ("metarl/Navigation2D-v0", {"goal_low": "abc"}, "goal_low of Navigation2DEnv must be a number"),
    ("metarl/SparsePointRobot-v0", {"max_action": "x"}, "max_action .* must be a number"),
    ("metarl/TabularMDP-v0", {"reward_noise_std": "a"}, "reward_noise_std .* must be a number"),
])
def test_gymnasium_make_checks_the_familys_kwargs(env_id, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make(env_id, **kwargs)


def test_family_tasks_actions_and_preset_kwargs_of_the_wrong_kind_are_one_line(capsys):
    with pytest.raises(ValueError, match="task parameter goal='abc' must be numbers of shape"):
        gym.make("metarl/Navigation2D-v0", task={"goal": "abc"})
    env = gym.make("metarl/HalfCheetahVel-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="the action holds NaN or inf"):
        env.step(np.full(6, np.nan))
    code, err = run(capsys, "train", "--algo", "rl2-ppo", "--env", "metarl/BernoulliBandit-v0", "--env-kwargs", "n=abc")
    assert code == 2 and "env kwarg n of metarl/BernoulliBandit-v0 must be a number, got 'abc'" in err


def test_every_seed_is_checked_before_the_first_trains(tmp_path, capsys):
    import metarl

    for seeds in (["0", "-1"], ["0", str(2 ** 70)], ["1", "1"]):
        code, err = run(capsys, "train", *TINY, "--seed", *seeds, "--logdir", str(tmp_path / "ms"))
        assert code == 2 and ("seed must be an integer in [0, 4294967295]" in err or "a seed twice" in err), err
        assert not (tmp_path / "ms").exists(), "refused before any seed trained"
    with pytest.raises(ValueError, match="a seed twice"):
        metarl.train("maml-trpo", "metarl/Navigation2D-v0", seed=[0, 0], logdir=tmp_path / "api")


def test_a_checkpoint_without_its_generator_state_is_refused_by_name(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert main(["train", *TINY, "--iterations", "1", "--logdir", str(logdir)]) == 0
    state = torch.load(logdir / "checkpoint.pt", weights_only=False)
    del state["rng"]
    torch.save(state, logdir / "checkpoint.pt")
    code, err = run(capsys, "train", "--resume", str(logdir), "--iterations", "2", "--no-progress")
    assert code == 2 and "has no 'rng' entry" in err and "KeyError" not in err


def test_a_corrupt_member_of_a_valid_omniglot_zip_is_one_line(tmp_path, capsys):
    from tests.conftest import SHARED_OMNIGLOT

    source = SHARED_OMNIGLOT / "images_background_small1.zip"
    if not source.is_file():
        pytest.skip("needs ../shared/data/omniglot")
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        member = [i for i in archive.infolist() if i.filename.endswith(".png")][10]
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    for i in range(start + 5, start + 40):
        data[i] ^= 0xFF
    (tmp_path / "images_background_small1.zip").write_bytes(bytes(data))
    for command in (["fewshot", "--algo", "protonet"], ["continual", "--algo", "oml"]):
        code, err = run(capsys, *command, "--dataset", "omniglot", "--data", str(tmp_path), "--logdir",
                        str(tmp_path / "run"))
        assert code == 2 and "cannot be decompressed" in err and member.filename in err, err
        assert "zlib" not in err.split("(")[0] and "Traceback" not in err


def test_learners_refuse_non_finite_targets_wrong_shapes_and_unhashable_labels(tmp_path):
    import metarl

    sin = tmp_path / "sin"
    assert main(["fewshot", "--dataset", "sinusoid", "--iterations", "1", "--metatest-tasks", "3", "--eval-every", "0",
                 "--logdir", str(sin), "--no-progress"]) == 0
    regressor = metarl.fewshot.load_learner(sin)
    with pytest.raises(ValueError, match="hold NaN or inf"):
        regressor.adapt(np.linspace(-5, 5, 5), [0.0, 1.0, np.nan, 0.0, 1.0])
    with pytest.raises(ValueError, match="predicts after adapting to a support set"):
        regressor.predict(np.zeros(3))
    online = metarl.continual.load_learner(dataset="sinusoid")
    width = 11  # one-hot of the 10 functions, then x
    with pytest.raises(ValueError, match="regression targets hold NaN or inf"):
        online.learn(np.zeros((1, width)), [np.nan])
    with pytest.raises(ValueError, match=r"inputs of shape \(1, 4\) do not fit"):
        online.learn(np.zeros((1, 4)), [0.0])
    classifier = metarl.continual.load_learner(dataset="omniglot")
    with pytest.raises(ValueError, match="a label must be hashable"):
        classifier.learn(np.zeros((1, 28, 28)), [{"a": 1}])
    rl = tmp_path / "rl"
    assert main(["train", *TINY, "--iterations", "1", "--logdir", str(rl)]) == 0
    adapted = metarl.load_policy(rl).adapt(gym.make("metarl/Navigation2D-v0"), episodes=0)
    with pytest.raises(ValueError, match=r"takes observations of shape \(2,\), got shape \(3,\)"):
        adapted.act(np.zeros(3))


def test_support_labels_of_several_types_come_back_as_given(tmp_path):
    import metarl
    from tests.conftest import SHARED_OMNIGLOT

    if not SHARED_OMNIGLOT.is_dir():
        pytest.skip("needs ../shared/data/omniglot")
    run_dir = tmp_path / "proto"
    assert main(["fewshot", "--algo", "protonet", "--dataset", "omniglot", "--iterations", "1", "--meta-batch-size", "1",
                 "--ways", "3", "--metatest-tasks", "2", "--hidden", "8", "--logdir", str(run_dir), "--no-progress"]) == 0
    learner = metarl.fewshot.load_learner(run_dir)
    with pytest.raises(ValueError, match="predicts after adapting"):
        learner.predict([np.zeros((105, 105))])
    rng = np.random.default_rng(0)
    images = [rng.random((105, 105)) > 0.9 for _ in range(4)]
    predicted = learner.adapt(images, [1, "cat", 1, "cat"]).predict(images)
    assert set(predicted.tolist()) <= {1, "cat"} and any(p == 1 and isinstance(p, int) for p in predicted.tolist())
