"""The benchmark scripts run (smoke checks; the numbers themselves are recorded in docs/benchmarks.md)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_script, requires_extra


def test_thread_benchmark_measures_idle_and_loaded(tmp_path):
    module = load_script("benchmark_threads")
    out = tmp_path / "threads.json"
    rows = module.main(["--threads", "1", "--iterations", "1", "--json", str(out)])
    assert set(rows[1]) == {"idle", "loaded"} and all(v > 0 for v in rows[1].values())
    assert json.loads(out.read_text())["1"]["idle"] == rows[1]["idle"]


def _documented(tag: str, doc: str) -> bool:
    import re

    generic = re.sub(r"\d+", "{k}", tag)
    prefix = tag.split("/")[0]
    parent = tag.rsplit("/", 1)[0]
    return f"`{tag}`" in doc or f"`{generic}`" in doc or f"`{prefix}/*`" in doc or f"`{parent}/<" in doc \
        or f"`{tag}`".replace("_", "") in doc.replace("_", "") or tag in doc


def test_pearl_benchmark_reports_update_rates(tmp_path, capsys):
    module = load_script("benchmark_pearl")
    out = tmp_path / "pearl.json"
    module.main(["--updates", "2", "--families", "metarl/SparsePointRobot-v0", "--json", str(out)])
    row = json.loads(out.read_text())["rows"][0]
    assert row["preset_updates_per_second"] > 0 and row["paper_updates_per_second"] > 0
    assert "| metarl/SparsePointRobot-v0 |" in capsys.readouterr().out


def test_iteration_benchmark_times_variants_side_by_side(tmp_path, capsys):
    module = load_script("benchmark_iteration")
    out = tmp_path / "iteration.json"
    module.main(["--env", "metarl/Navigation2D-v0", "--variant", "meta_batch_size=2,episodes_per_task=2",
                 "--variant", "meta_batch_size=2,episodes_per_task=2,fisher_subsample=2", "--iterations", "1",
                 "--rounds", "1", "--warmup", "0", "--json", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert [r["settings"] for r in rows[1:]] == [{"meta_batch_size": 2, "episodes_per_task": 2},
                                                 {"meta_batch_size": 2, "episodes_per_task": 2, "fisher_subsample": 2}]
    assert all(r["iteration_seconds"] >= r["sampling_seconds"] + r["outer_step_seconds"] > 0 for r in rows)
    assert "fisher_subsample=2" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:  # a mistake is a one-line usage error
        module.main(["--variant", "no_such_setting=3"])
    assert stop.value.code == 2 and "unknown setting 'no_such_setting'" in capsys.readouterr().err


def test_every_tensorboard_tag_is_documented(tmp_path):
    """Tiny runs of each kind; every scalar tag they write appears in docs/tensorboard.md."""
    from metarl.cli import main
    from tests.conftest import REPO
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    doc = (REPO / "docs" / "tensorboard.md").read_text()
    runs = {
        "maml": ["train", "--algo", "maml-ppo", "--meta-batch-size", "2", "--episodes-per-task", "2",
                 "--max-episode-steps", "5", "--hidden-sizes", "8", "--metatest-tasks", "2", "--inner-steps", "2",
                 "--eval-every", "1", "--eval-tasks", "2"],
        "trpo": ["train", "--algo", "maml-trpo", "--meta-batch-size", "2", "--episodes-per-task", "2",
                 "--max-episode-steps", "5", "--hidden-sizes", "8", "--metatest-tasks", "2", "--cg-iters", "2"],
        "rl2": ["train", "--algo", "rl2-ppo", "--meta-batch-size", "2", "--num-minibatches", "1", "--hidden-size", "8",
                "--metatest-tasks", "2", "--max-episode-steps", "5"],
        "pearl": ["train", "--algo", "pearl", "--env", "metarl/SparsePointRobot-v0", "--train-tasks", "3",
                  "--tasks-per-iteration", "2", "--initial-episodes", "1", "--gradient-steps", "2", "--meta-batch-size",
                  "2", "--batch-size", "4", "--context-size", "4", "--hidden-sizes", "8", "--encoder-hidden-sizes", "8",
                  "--metatest-tasks", "2", "--posterior-episodes", "1", "--eval-every", "1", "--eval-tasks", "2"],
        "sin": ["fewshot", "--algo", "maml", "--dataset", "sinusoid", "--metatest-tasks", "5", "--eval-every", "1",
                "--eval-tasks", "5"],
        "continual": ["continual", "--method", "oml", "--dataset", "sinusoid", "--hidden", "8", "--sine-functions",
                      "2", "--sine-batches", "2", "--metatest-streams", "2", "--lr-streams", "1", "--lr-candidates",
                      "0.01"],
    }
    missing = []
    for name, argv in runs.items():
        logdir = tmp_path / name
        assert main([*argv, "--iterations", "2", "--logdir", str(logdir), "--no-progress"]) == 0, name
        ea = EventAccumulator(str(logdir))
        ea.Reload()
        missing += [f"{name}: {tag}" for tag in ea.Tags()["scalars"] if not _documented(tag, doc)]
    assert not missing, missing


@requires_extra("text")
def test_text_benchmark_reports_sentences_per_second_in_inference_and_training(tmp_path):
    bench = load_script("benchmark_text")
    out = tmp_path / "text.json"
    result = bench.main(["--sentences", "16", "--batch", "8", "--repeats", "1", "--encoders", "wordllama",
                         "--json", str(out)])
    rates = result["sentences_per_second"]["wordllama"]
    assert set(rates) == {"tokenise", "inference", "training"} and all(r > 0 for r in rates.values())
    assert out.is_file()


@requires_extra("bench")
def test_maml_benchmark_times_the_core_against_the_other_implementations(tmp_path):
    """Every implementation's meta-gradient agrees before timing (the script exits with 1 otherwise)."""
    bench = load_script("benchmark")
    out = tmp_path / "sin.json"
    assert bench.main(["maml-sinusoid", "--iterations", "2", "--rounds", "1", "--warmup", "0",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {"core (GradientLearner.query_loss)", "autograd.grad loop", "hand-written torch.func vmap", "torchopt MetaSGD loop",
            "higher innerloop_ctx loop"} == set(result["ms_per_iteration"])
    assert all(gap < 1e-4 for gap in result["meta_gradient_relative_gap"].values())


def test_maml_omniglot_benchmark_and_the_conv_learner_loops_over_tasks(tmp_path):
    import torch

    from metarl.fewshot.learners import GradientLearner
    from metarl.fewshot.networks import ConvClassifier, sinusoid_mlp

    bench = load_script("benchmark")
    assert bench.main(["maml-omniglot", "--ways", "3", "--meta-batch-size", "2", "--iterations", "1", "--rounds", "1",
                       "--warmup", "0", "--json", str(tmp_path / "om.json")]) == 0
    conv = GradientLearner(ConvClassifier(28, hidden=8), "maml", 0.4, task="classification")
    assert not conv.vectorize and GradientLearner(sinusoid_mlp(), "maml", 0.01, task="regression").vectorize
    x, y = torch.rand(2, 3, 1, 28, 28), torch.tensor([[0, 1, 2], [2, 1, 0]])
    looped = conv.adapt_tasks(x, y, steps=1, ways=3)
    from metarl.adaptation import adapt_batch

    vmapped = adapt_batch(conv.loss, conv.initial_parameters(3), (x, y), steps=1, step_size=0.4, vectorize=True)
    assert all(torch.allclose(looped[k], vmapped[k], atol=1e-5) for k in looped)
