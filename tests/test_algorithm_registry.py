"""One record per algorithm: the registry lists each kind under its subcommand, one loader returns what a user
holds for any run, the interface module is a leaf and the package has no import circle."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

import metarl
from metarl.cli import main
from metarl.registry import algorithm_names, algorithm_record
from tests.conftest import REPO, SHARED

TINY_RL = ["--env", "metarl/Navigation2D-v0", "--meta-batch-size", "2", "--episodes-per-task", "2",
           "--max-episode-steps", "5", "--hidden-sizes", "8", "--metatest-tasks", "2", "--metatest-steps", "1",
           "--cg-iters", "2", "--iterations", "1", "--no-progress"]


def _builtins(kind: str) -> list[str]:
    """The kind's algorithms registered by metarl itself (a test may have registered a user's beside them)."""
    return [n for n in algorithm_names(kind) if str(algorithm_record(n).build).startswith("metarl.")]


def test_every_builtin_is_one_record_under_its_subcommand():
    assert _builtins("meta-rl") == ["maml-ppo", "maml-trpo", "pearl", "rl2-ppo", "rl2-transformer"]
    assert _builtins("few-shot") == ["fomaml", "maml", "mann", "metasgd", "protonet"]
    assert _builtins("continual") == ["er", "finetune", "iid", "oml", "oml-er", "pretrain"]
    for name in algorithm_names():
        record = algorithm_record(name)
        assert record.name == name and record.summary and record.command in ("train", "fewshot", "continual")
        assert record.settings_class().__dataclass_fields__["seed"]


@pytest.mark.parametrize("command, algo, right", [
    ("train", "maml", "metarl fewshot --algo maml; for meta-RL use --algo maml-trpo"),
    ("fewshot", "maml-trpo", "metarl train --algo maml-trpo; for few-shot use --algo maml"),
    ("continual", "protonet", "metarl fewshot --algo protonet"),
    ("fewshot", "oml", "metarl continual --algo oml"),
])
def test_an_algorithm_of_another_kind_is_one_line_naming_its_subcommand(command, algo, right, tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = ["--env", "metarl/Navigation2D-v0"] if command == "train" else []
    assert main([command, "--algo", algo, *extra]) == 2
    err = capsys.readouterr().err
    assert right in err and len(err.strip().splitlines()) == 1 and "usage:" not in err
    assert not (tmp_path / "runs").exists(), "nothing started"


def test_unknown_flags_and_abbreviations_are_one_line(capsys):
    assert main(["train", "--iter", "2"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --iter" in err and "see metarl train --help" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["evaluate", "nowhere", "--task", "3"]) == 2
    assert "unrecognized arguments: --task" in capsys.readouterr().err
    assert main(["train", "--algo", "nope"]) == 2
    assert "unknown algorithm 'nope'; choose from" in capsys.readouterr().err


def test_load_returns_what_a_user_holds_for_every_kind(tmp_path):
    rl, sin = tmp_path / "rl", tmp_path / "sin"
    assert main(["train", *TINY_RL, "--logdir", str(rl)]) == 0
    assert main(["fewshot", "--dataset", "sinusoid", "--iterations", "1", "--metatest-tasks", "3", "--eval-every", "0",
                 "--logdir", str(sin), "--no-progress"]) == 0
    assert type(metarl.load(rl)).__name__ == "MAMLPolicy"
    assert type(metarl.load(sin)).__name__ == "FewShotRegressor"
    assert type(metarl.load_policy(rl)) is type(metarl.load(rl))
    assert type(metarl.fewshot.load_learner(sin)) is type(metarl.load(sin))
    with pytest.raises(ValueError, match="is a maml run .few-shot., not a meta-rl one: load it with metarl.load or "
                                         "metarl.fewshot.load_learner"):
        metarl.load_policy(sin)
    with pytest.raises(ValueError, match="not a continual one"):
        metarl.continual.load_learner(rl)
    assert metarl.load_run(rl).name == "maml-trpo"


def test_the_interface_is_a_leaf_and_the_package_has_no_import_circle():
    tree = ast.parse((REPO / "metarl" / "algorithm.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
                and node.module.startswith("metarl")}
    assert imported <= {"metarl.checkpoint", "metarl.config", "metarl.errors", "metarl.registry", "metarl.training"}, \
        "metarl/algorithm.py imports no algorithm, sampler, policy or launcher"
    tool = SHARED / "tools" / "import_cycles.py"
    if not tool.is_file():
        pytest.skip("../shared/tools/import_cycles.py is not beside the repository")
    out = subprocess.run([sys.executable, str(tool)], capture_output=True, text=True, cwd=REPO, timeout=60).stdout
    assert " 0 circle(s)" in out, out


def test_few_shot_and_continual_learners_do_not_inherit_the_sampling_methods():
    from metarl.continual.algorithm import ContinualLearning
    from metarl.fewshot.algorithms import FewShotClassification, SinusoidMetaLearning
    from metarl.meta_rl import MetaRLAlgorithm

    for cls in (ContinualLearning, FewShotClassification, SinusoidMetaLearning):
        assert not issubclass(cls, MetaRLAlgorithm) and not hasattr(cls, "make_sampler")
    from metarl.agents import MAMLTRPO, PEARL, RL2PPO

    assert all(issubclass(cls, MetaRLAlgorithm) for cls in (MAMLTRPO, PEARL, RL2PPO))
