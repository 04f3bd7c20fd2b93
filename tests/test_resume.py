"""Runs keep every setting: help and the first lines show them, config.yaml records them, a resume keeps them and
refuses changes, the run directory is locked, and Ctrl-C or a damaged best.pt loses no work."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from metarl.cli import main
from metarl.rundir import lock_run_dir
from tests.conftest import REPO

TINY = ["--meta-batch-size", "2", "--episodes-per-task", "2", "--max-episode-steps", "5", "--hidden-sizes", "8",
        "--metatest-tasks", "2", "--metatest-steps", "1", "--cg-iters", "2", "--no-progress"]


def metarl(*argv: str, cwd=None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The console command as a user runs it."""
    return subprocess.run([sys.executable, "-m", "metarl.cli", *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def test_help_first_lines_and_config_file_show_the_family_preset(tmp_path):
    help_text = metarl("train", "--algo", "maml-trpo", "--env", "metarl/Navigation2D-v0", "--help").stdout
    flat = " ".join(help_text.split())
    assert "--gae-lambda FLOAT GAE lambda for advantages (1.0: returns minus baseline, as the original) (default: 0.9)" \
        in flat
    assert "(default: 10)" in flat.split("--fisher-subsample INT")[-1][:250]
    generic = " ".join(metarl("train", "--algo", "maml-trpo", "--env", "metarl/TabularMDP-v0", "--help").stdout.split())
    assert "as the original) (default: 1.0)" in generic
    logdir = tmp_path / "run"
    proc = metarl("train", "--env", "metarl/Navigation2D-v0", "--iterations", "1", "--logdir", str(logdir), *TINY)
    assert proc.returncode == 0, proc.stderr
    first = proc.stderr.split("\n", 1)[1][:1500]
    assert "gae_lambda=0.9" in first and "fisher_subsample=10" in first
    saved = yaml.safe_load((logdir / "config.yaml").read_text())
    assert saved["gae_lambda"] == 0.9 and saved["algo"] == "maml-trpo" and saved["checkpoint_every"] == 10
    # the settings file reruns the same run
    again = tmp_path / "again"
    assert main(["train", "--config", str(logdir / "config.yaml"), "--logdir", str(again), "--no-progress"]) == 0
    assert json.loads((again / "metatest.json").read_text())["returns_by_step"] == \
        json.loads((logdir / "metatest.json").read_text())["returns_by_step"]


def test_resume_keeps_every_setting_and_refuses_changes(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert main(["train", *TINY, "--iterations", "2", "--checkpoint-every", "1", "--seed", "3",
                 "--logdir", str(logdir)]) == 0
    for argv, named in [(["--seed", "4"], "seed"), (["--inner-lr", "0.5"], "inner_lr"),
                        (["--env", "metarl/TabularMDP-v0"], "env"), (["--hidden-sizes", "16"], "hidden_sizes"),
                        (["--algo", "rl2-ppo"], "is a maml-trpo run, not rl2-ppo"),
                        (["--logdir", str(tmp_path / "other")], "differs from --resume"),
                        (["--iterations", "1"], "is at meta-iteration 2")]:
        assert main(["train", "--resume", str(logdir), "--no-progress", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert named in err and "Traceback" not in err, err
    # meta-test-only and runtime settings may change; the saved cadence is kept
    result = json.loads((logdir / "metatest.json").read_text())
    assert main(["train", "--resume", str(logdir), "--iterations", "4", "--metatest-tasks", "3",
                 "--no-progress"]) == 0
    checkpoint = torch.load(logdir / "checkpoint.pt", weights_only=False)
    assert checkpoint["config"]["checkpoint_every"] == 1 and checkpoint["config"]["seed"] == 3
    assert checkpoint["iteration"] == 4 and checkpoint["target_iterations"] == 4
    new = json.loads((logdir / "metatest.json").read_text())
    assert new["n_tasks"] == 3 and result["n_tasks"] == 2 and new["seed"] == 3


def test_a_locked_run_directory_is_refused(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert main(["train", *TINY, "--iterations", "1", "--logdir", str(logdir)]) == 0
    with lock_run_dir(logdir):
        proc = metarl("train", "--resume", str(logdir), "--iterations", "2", "--no-progress")
    assert proc.returncode == 2 and f"in use by another metarl process (pid {os.getpid()})" in proc.stderr


def test_housekeeping_temporaries_modes_and_numeric_tasks(tmp_path):
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "checkpoint.pt.abc.tmp").write_bytes(b"left by a killed write")
    old = os.umask(0o022)
    try:
        assert main(["train", *TINY, "--iterations", "1", "--logdir", str(logdir),
                     "--env", "metarl/BernoulliBandit-v0", "--env-kwargs", "n=5"]) == 0
    finally:
        os.umask(old)
    assert not list(logdir.glob("*.tmp"))
    for name in ("checkpoint.pt", "metatest.json", "config.yaml"):
        assert (logdir / name).stat().st_mode & 0o777 == 0o644, name
    sampler_tasks = json.loads((logdir / "metatest.json").read_text())["tasks"]
    assert all(isinstance(v, float) for task in sampler_tasks for v in task["params"]["means"])


def test_user_numeric_tasks_are_stored_as_numbers():
    import numpy as np

    from metarl.tasks import tasks_to_json

    assert tasks_to_json([np.float64(6.13), 2, np.array([1.0, 2.0])]) == [6.13, 2, [1.0, 2.0]]


def test_a_damaged_best_checkpoint_keeps_the_last_states_meta_test(tmp_path, capsys, monkeypatch):
    import metarl.callbacks as training

    logdir = tmp_path / "run"
    real = training.load_checkpoint

    def damaged(path):
        if str(path).endswith("best.pt"):
            raise training.CheckpointError(f"checkpoint {path} is unreadable (damaged)")
        return real(path)

    monkeypatch.setattr(training, "load_checkpoint", damaged)
    code = main(["train", *TINY, "--iterations", "2", "--eval-every", "1", "--eval-tasks", "2",
                 "--logdir", str(logdir)])
    assert code == 2 and "best.pt is unreadable" in capsys.readouterr().err
    assert len(json.loads((logdir / "metatest.json").read_text())["returns_by_step"]) == 2


def test_ctrl_c_saves_the_state_and_says_how_to_resume(tmp_path):
    logdir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "metarl.cli", "train", *TINY, "--iterations", "100000",
                             "--checkpoint-every", "100000", "--logdir", str(logdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(logdir.glob("events.out.tfevents.*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at meta-iteration" in err and f"--resume {logdir}" in err and "Traceback" not in err
    iteration = int(err.split("interrupted at meta-iteration ")[1].split(";")[0])
    assert iteration > 0 and torch.load(logdir / "checkpoint.pt", weights_only=False)["iteration"] == iteration
    assert main(["train", "--resume", str(logdir), "--iterations", str(iteration + 1), "--no-progress"]) == 0


def test_readme_family_example_runs_from_its_directory_without_pythonpath(tmp_path):
    from tests.test_cli import _readme_example

    readme = (REPO / "README.md").read_text()
    command = re.search(r"```bash\n(metarl train [^\n]*my_families:PointLine-v0[^\n]*)\n```", readme)
    assert command, "the README's own-family example ends in its metarl train command"
    (tmp_path / "my_families.py").write_text(_readme_example())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    metarl = shutil.which("metarl") or str(Path(sys.executable).with_name("metarl"))
    argv = [metarl, *shlex.split(command.group(1))[1:], "--iterations", "1", *TINY]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "runs" / "pointline" / "metatest.json").read_text())["env"] == \
        "my_families:PointLine-v0"
    missing = subprocess.run([metarl, "train", "--env", "their_families:X-v0", "--logdir", "run2", *TINY],
                             capture_output=True, text=True, cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "cannot import module 'their_families'" in missing.stderr
    assert str(tmp_path) in missing.stderr, "the message says where it looked"


def test_few_shot_learners_load_without_importing_the_subpackage(tmp_path):
    code = ("import metarl, sys; learner = metarl.fewshot.load_learner(sys.argv[1]); "
            "print(type(learner).__name__)")
    logdir = tmp_path / "sin"
    assert main(["fewshot", "--dataset", "sinusoid", "--iterations", "1", "--metatest-tasks", "3", "--eval-every", "0",
                 "--logdir", str(logdir), "--no-progress"]) == 0
    proc = subprocess.run([sys.executable, "-c", code, str(logdir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "FewShotRegressor", proc.stderr
