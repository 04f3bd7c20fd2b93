"""The training script / console command end to end, the user-family route, and its error messages."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from metarl.cli import main, train_main
from metarl.launcher import parse_env_kwargs
from tests.conftest import REPO
from tests.test_save_load import scalars

TINY = ["--meta-batch-size", "2", "--episodes-per-task", "3", "--max-episode-steps", "10", "--hidden-sizes", "16",
        "--metatest-tasks", "3", "--cg-iters", "3", "--no-progress"]


def test_train_script_writes_curves_checkpoint_and_metatest(tmp_path):
    logdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--algo", "maml-trpo", "--env", "metarl/Navigation2D-v0",
         "--seed", "0", "--logdir", str(logdir), "--iterations", "2", *TINY],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "adaptation steps | mean return" in proc.stdout
    result = json.loads((logdir / "metatest.json").read_text())
    assert result["env"] == "metarl/Navigation2D-v0" and result["algo"] == "maml-trpo"
    assert result["n_tasks"] == 3 and len(result["returns_by_step"]) == 4
    assert (logdir / "checkpoint.pt").is_file()
    steps = [s for s, _ in scalars(logdir, "rollout/return_after_adaptation")]
    # the Navigation2D preset trains two inner steps: support episodes for each, then the query episodes
    assert steps == sorted(steps) and steps[0] == 3 * 2 * 3 * 10, "x axis counts env steps"
    for tag in ("rollout/return_before_adaptation", "train/approx_kl", "train/surrogate_loss_after", "time/fps"):
        assert len(scalars(logdir, tag)) == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(logdir))
    ea.Reload()
    assert any("hyperparameters" in t for t in ea.Tags()["tensors"])


def test_console_command_resume_continues_to_more_iterations(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert main(["train", "--logdir", str(logdir), "--iterations", "1", *TINY]) == 0
    assert main(["train", "--resume", str(logdir), "--iterations", "2", "--no-progress"]) == 0
    assert len(scalars(logdir)) == 2
    assert json.loads((logdir / "metatest.json").read_text())["iterations"] == 2


def test_resume_of_a_finished_run_without_iterations_only_meta_tests_it(tmp_path):
    """Without --iterations a resumed run keeps its own length (not the family default of 200)."""
    logdir = tmp_path / "run"
    first = train_main(["--logdir", str(logdir), "--iterations", "2", *TINY])
    again = train_main(["--resume", str(logdir), "--no-progress"])
    assert again["iterations"] == 2 and again["returns_by_step"] == first["returns_by_step"]
    assert len(scalars(logdir)) == 2, "no further training"
    checkpoint = torch.load(logdir / "checkpoint.pt", weights_only=False)
    assert (checkpoint["iteration"], checkpoint["target_iterations"]) == (2, 2)
    del checkpoint["target_iterations"]  # a checkpoint of an older version: stop where it stopped
    torch.save(checkpoint, logdir / "checkpoint.pt")
    assert train_main(["--resume", str(logdir), "--no-progress"])["iterations"] == 2


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- example: my_families.py -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost the user-family example"
    return match.group(1)


def test_user_family_from_the_readme_trains_without_touching_metarl(tmp_path, monkeypatch):
    (tmp_path / "my_families.py").write_text(_readme_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    result = train_main(["--algo", "maml-trpo", "--env", "my_families:PointLine-v0", "--seed", "0",
                         "--logdir", str(tmp_path / "run"), "--iterations", "2", *TINY])
    assert result["env"] == "my_families:PointLine-v0" and len(result["returns_by_step"]) == 4


def test_error_messages(tmp_path, capsys):
    assert main(["train", "--env", "metarl/NoSuchFamily-v0", "--logdir", str(tmp_path / "a"), *TINY]) == 2
    assert "unknown env id 'metarl/NoSuchFamily-v0'" in capsys.readouterr().err
    assert main(["train", "--env", "CartPole-v1", "--logdir", str(tmp_path / "b"), *TINY]) == 2
    assert "not a task family" in capsys.readouterr().err
    assert main(["train", *TINY, "--inner-lr", "-1", "--logdir", str(tmp_path / "c")]) == 2
    assert "inner_lr must be a positive number" in capsys.readouterr().err
    assert main(["train", *TINY, "--meta-batch-size", "0", "--logdir", str(tmp_path / "d")]) == 2
    assert "meta_batch_size must be a positive integer" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "checkpoint.pt").write_bytes(b"truncated")
    assert main(["train", "--resume", str(tmp_path / "e")]) == 2
    assert "unreadable" in capsys.readouterr().err
    assert main(["bogus"]) == 2


def test_env_kwargs_parsing_and_listing(capsys):
    assert parse_env_kwargs(["k=10", "n=100", "name=foo", "r=0.5"]) == {"k": 10, "n": 100, "name": "foo", "r": 0.5}
    with pytest.raises(ValueError, match="key=value"):
        parse_env_kwargs(["k10"])
    assert main(["envs"]) == 0
    assert "metarl/Navigation2D-v0" in capsys.readouterr().out


def test_load_run_rebuilds_the_trained_algorithm_and_its_initialisation(tmp_path):
    from metarl.registry import load_run

    logdir = tmp_path / "run"
    train_main(["--logdir", str(logdir), "--iterations", "1", "--seed", "3", *TINY])
    trained, fresh = load_run(logdir), load_run(logdir, weights=False)
    saved = torch.load(logdir / "checkpoint.pt", weights_only=False)["algorithm"]["policy"]
    for name, value in trained.policy.state_dict().items():
        assert torch.equal(value, saved[name])
    torch.manual_seed(3)
    again = type(fresh)(fresh.cfg)
    for a, b in zip(fresh.policy.parameters(), again.policy.parameters()):
        assert torch.equal(a, b), "weights=False gives the run's own initialisation"
    assert any(not torch.equal(a, b) for a, b in zip(fresh.policy.parameters(), trained.policy.parameters()))


DOCUMENTED_DATA_COMMANDS = [
    ("fewshot", ["--algo", "protonet", "--dataset", "omniglot"]),
    ("fewshot", ["--algo", "maml", "--dataset", "omniglot"]),
    ("continual", ["--algo", "oml", "--dataset", "omniglot"]),
    ("continual", ["--method", "oml", "--dataset", "omniglot"]),
    ("fewshot", ["--algo", "protonet", "--dataset", "banking77"]),
]


@pytest.mark.parametrize("command, args", DOCUMENTED_DATA_COMMANDS)
def test_data_in_every_position_keeps_the_datasets_preset(command, args, tmp_path, capsys):
    from metarl.launcher import resolve_run
    from metarl.registry import algorithm_record

    algo, dataset = args[1], args[3]
    preset = algorithm_record(algo).preset(dataset)
    assert preset, f"{algo} has a preset for {dataset}"
    data = ["--data", str(tmp_path)]
    for position in range(0, len(args) + 1, 2):
        argv = [*args[:position], *data, *args[position:]]
        _, config, _, _ = resolve_run(command, argv)
        assert config.dataset in (dataset, (dataset,)) and config.data == str(tmp_path), argv
        assert {k: getattr(config, k) for k in preset} == \
            {k: (tuple(v) if isinstance(v, list) else v) for k, v in preset.items()}, f"preset dropped: {argv}"
        # the console command shows the same defaults
        with pytest.raises(SystemExit):
            main([command, *argv, "--help"])
        shown = capsys.readouterr().out
        first = next(k for k in preset if isinstance(preset[k], (int, float)) and not isinstance(preset[k], bool))
        flag_help = shown.split("\n  --" + first.replace("_", "-") + " ")[1].split("\n  --")[0]
        assert f"(default: {preset[first]})" in " ".join(flag_help.split()), (argv, first)
    with pytest.raises(ValueError, match="unrecognized arguments: --datas"):
        resolve_run(command, [*args, "--datas", str(tmp_path)])


def test_python_started_in_the_clones_parent_directory_imports_the_package(tmp_path):
    """A clone named metarl seen from its parent directory is not an empty namespace package (the install is
    path-based: the README's and CI's --config-settings editable_mode=compat)."""
    (tmp_path / "metarl").symlink_to(REPO, target_is_directory=True)
    code = "import metarl, metarl.agents.maml_trpo; print(callable(metarl.train), metarl.list_families()[0])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("True metarl/"), proc.stderr


def test_help_is_plain_text_and_says_each_default_once(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text and "metarl continual --algo oml" in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    logdir_help = shown.split("--logdir LOGDIR TensorBoard")[1].split(" --")[0]
    assert logdir_help.count("default") == 1 and "(default: None)" not in logdir_help


def test_a_refused_run_prints_its_one_line_and_no_banner(tmp_path, capsys):
    logdir = tmp_path / "run"
    assert main(["train", "--env", "metarl/Navigation2D-v0", "--iterations", "1", "--logdir", str(logdir), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--env", "metarl/Navigation2D-v0", "--iterations", "1", "--logdir", str(logdir), *TINY]) == 2
    err = capsys.readouterr().err
    assert "already holds a checkpoint" in err and "starting" not in err and "settings:" not in err
    from metarl.rundir import lock_run_dir

    with lock_run_dir(logdir):
        assert main(["train", "--resume", str(logdir), "--iterations", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is in use by another metarl process" in err and "[Errno" not in err


def test_the_command_line_reference_is_current():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "cli_reference.py"), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = (REPO / "docs" / "cli.md").read_text()
    for term in ("task family", "task", "trial", "meta-iteration", "preset", "meta-test", "adaptation step"):
        assert f"- **{term}" in text, term


def test_help_lists_the_chosen_learners_flags_and_accepts_the_others(capsys):
    from metarl.launcher import _describe, resolve_run

    with pytest.raises(SystemExit):
        main(["fewshot", "--algo", "protonet", "--dataset", "banking77", "--help"])
    shown = capsys.readouterr().out
    assert "--encoder" in shown and "--ways" in shown
    for other in ("--image-size", "--controller-size", "--inner-lr", "--downsample"):
        assert other not in shown, other
    with pytest.raises(SystemExit):
        main(["fewshot", "--algo", "mann", "--dataset", "omniglot", "--help"])
    assert "--controller-size" in capsys.readouterr().out
    _, config, _, _ = resolve_run("fewshot", ["--algo", "protonet", "--dataset", "banking77", "--controller-size", "9"])
    assert config.controller_size == 9, "a setting the learner does not read is still accepted"
    described = _describe(config, "protonet")
    assert "encoder=" in described and "image_size" not in described and "controller_size" not in described
