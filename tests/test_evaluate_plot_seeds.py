"""``metarl evaluate``, ``metarl plot``, ``metarl train --seed 0 1 2`` and ``metarl.train``, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import metarl
from metarl.cli import main
from tests.conftest import requires_extra
from tests.test_entry_points import TINY

NAV = "metarl/Navigation2D-v0"
MAML = ["--algo", "maml-trpo", "--max-episode-steps", "8", *TINY["maml-trpo"]]


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    """``metarl train --seed 0 1 2`` into one directory (2 iterations each)."""
    parent = tmp_path_factory.mktemp("seeds") / "nav"
    assert main(["train", "--env", NAV, *MAML, "--iterations", "2", "--seed", "0", "1", "2", "--logdir", str(parent),
                 "--no-progress"]) == 0
    return parent


def test_several_seeds_run_into_subdirectories_with_a_summary(seeds_run, tmp_path):
    summary = json.loads((seeds_run / "metatest_summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2] and len(summary["runs"]) == 3
    per_seed = [json.loads((seeds_run / f"seed_{s}" / "metatest.json").read_text()) for s in (0, 1, 2)]
    after = [r["returns_by_step"][1] for r in per_seed]
    entry = summary["metrics"]["returns_by_step[1]"]
    assert entry["values"] == pytest.approx(after) and entry["mean"] == pytest.approx(np.mean(after))
    from scipy.stats import t
    assert entry["ci95"] == pytest.approx(t.ppf(0.975, 2) * np.std(after, ddof=1) / np.sqrt(3))
    assert "inner_lr" not in summary["metrics"], "settings echoed in the result are not results"
    # each seed is the same run as a single-seed one
    single = tmp_path / "s1"
    assert main(["train", "--env", NAV, *MAML, "--iterations", "2", "--seed", "1", "--logdir", str(single),
                 "--no-progress"]) == 0
    assert json.loads((single / "metatest.json").read_text())["returns_by_step"] == per_seed[1]["returns_by_step"]


def test_python_train_api_takes_presets_settings_and_seeds(tmp_path):
    run = metarl.train("maml-trpo", NAV, seed=[0, 1], logdir=tmp_path / "api", iterations=1, meta_batch_size=2,
                       episodes_per_task=2, hidden_sizes=[8], metatest_tasks=2, metatest_steps=1, cg_iters=2,
                       max_episode_steps=8)
    assert (run / "metatest_summary.json").is_file() and (run / "seed_1" / "checkpoint.pt").is_file()
    assert metarl.load_policy(run / "seed_0").algorithm.cfg.inner_steps == 2, "the Navigation2D preset applies"
    algo = metarl.make_algorithm("maml-trpo", env=NAV, iterations=1, meta_batch_size=2, episodes_per_task=2,
                                 hidden_sizes=[8], metatest_tasks=2, metatest_steps=1, max_episode_steps=8)
    assert algo.learn(tmp_path / "learn") is algo and algo.metatest_result["iterations"] == 1
    with pytest.raises(ValueError, match="unknown algorithm"):
        metarl.train("mamal", NAV)


def test_evaluate_recomputes_the_meta_test_and_tests_other_families(seeds_run, capsys):
    run = seeds_run / "seed_0"
    saved = json.loads((run / "metatest.json").read_text())
    again = metarl.evaluate(run)
    assert again["returns_by_step"] == saved["returns_by_step"], "same tasks, same episodes"
    assert main(["evaluate", str(run), "--tasks", "4", "--seed", "9"]) == 0
    assert "4 held-out tasks of metarl/Navigation2D-v0" in capsys.readouterr().out
    other = metarl.evaluate(run, "metarl/SparsePointRobot-v0", n_tasks=3)
    assert other["env"] == "metarl/SparsePointRobot-v0" and len(other["success_rate_by_step"]) == 2
    assert main(["evaluate", str(run), "--env", "metarl/HalfCheetahVel-v0"]) == 2
    err = capsys.readouterr().err
    assert "trained on the observation space" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["evaluate", str(run.parent / "missing")]) == 2


def test_evaluate_pictures_the_plane_as_a_png(seeds_run, tmp_path, capsys):
    assert main(["evaluate", str(seeds_run / "seed_0"), "--tasks", "2", "--video", str(tmp_path / "nav.mp4")]) == 0
    image = Image.open(tmp_path / "nav.png")
    assert image.size[0] > 200 and image.size[1] > 200


@pytest.fixture(scope="module")
def cheetah_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cheetah") / "hc"
    assert main(["train", "--env", "metarl/HalfCheetahVel-v0", *MAML[:2], *TINY["maml-trpo"], "--max-episode-steps",
                 "4", "--iterations", "1", "--logdir", str(run), "--no-progress"]) == 0
    return run


def test_evaluate_renders_mujoco_headless_before_and_after_adaptation(cheetah_run, tmp_path):
    out = tmp_path / "cheetah.gif"
    code = subprocess.run([sys.executable, "-m", "metarl.cli", "evaluate", str(cheetah_run), "--tasks", "1",
                           "--video", str(out)], capture_output=True, text=True, timeout=300, env=_headless_env())
    assert code.returncode == 0, code.stderr
    gif = Image.open(out)
    assert gif.n_frames == 5, "two episodes of 4 steps plus their first frames, every second frame kept"


@requires_extra("video")
def test_evaluate_writes_mp4_with_the_video_extra(cheetah_run, tmp_path):
    import imageio.v2 as imageio

    out = tmp_path / "cheetah.mp4"
    assert main(["evaluate", str(cheetah_run), "--tasks", "1", "--video", str(out)]) == 0
    assert len(imageio.mimread(out)) == 10


def test_mp4_without_the_extra_is_refused_before_rendering(cheetah_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert main(["evaluate", str(cheetah_run), "--tasks", "1", "--video", str(tmp_path / "x.mp4")]) == 2
    assert "pip install 'metarl[video]'" in capsys.readouterr().err
    assert main(["evaluate", str(cheetah_run), "--tasks", "1", "--video", str(tmp_path / "x.avi")]) == 2


def _headless_env() -> dict:
    import os

    env = dict(os.environ)
    env.pop("DISPLAY", None)
    env.pop("MUJOCO_GL", None)
    return env


def test_plot_draws_seeds_as_a_band_and_the_adaptation_curve(seeds_run, tmp_path, capsys):
    single = tmp_path / "other"
    assert main(["train", "--env", NAV, *MAML, "--iterations", "2", "--inner-lr", "0.05", "--logdir", str(single),
                 "--no-progress"]) == 0
    out = tmp_path / "fig.png"
    assert main(["plot", str(seeds_run), str(single), "-o", str(out)]) == 0
    assert Image.open(out).size[0] > 800
    from metarl.plotting import _group, find_runs
    groups = _group(find_runs([seeds_run, single]))
    assert [len(runs) for _, runs in groups] == [3, 1], "runs differing only in seed are one curve"
    assert main(["plot", str(seeds_run), "-o", str(out), "--tag", "no/such_tag"]) == 2
    assert "pick a logged tag with --tag" in capsys.readouterr().err
    assert main(["plot", str(tmp_path), "-o", str(out)]) == 2
    assert main(["plot", str(seeds_run), "-o", str(tmp_path / "fig.svg")]) == 2


def test_plot_draws_each_algorithm_with_the_first_of_several_tags_it_logged(seeds_run, tmp_path, capsys):
    rl2 = tmp_path / "rl2"
    assert main(["train", "--algo", "rl2-ppo", "--env", NAV, "--meta-batch-size", "4", "--iterations", "2",
                 "--eval-every", "1", "--eval-tasks", "2", "--logdir", str(rl2), "--no-progress"]) == 0
    from metarl.plotting import _scalars
    tags = ["eval/last_episode_return", "rollout/return_after_adaptation"]
    assert _scalars(rl2, tags)[0] == "eval/last_episode_return"
    assert _scalars(seeds_run / "seed_0", tags)[0] == "rollout/return_after_adaptation"  # MAML has no such eval tag
    out = tmp_path / "cmp.png"
    assert main(["plot", str(seeds_run), str(rl2), "-o", str(out), "--tag", *tags, "--logx", "--smooth", "3"]) == 0
    assert Image.open(out).size[0] > 800
    assert main(["plot", str(rl2), "-o", str(out), "--tag", "no/such_tag", "other/tag"]) == 2
    assert "no/such_tag / other/tag" in capsys.readouterr().err


def test_smoothing_is_a_running_mean_of_the_last_points(seeds_run, tmp_path, capsys):
    import numpy as np

    from metarl.plotting import smooth

    np.testing.assert_allclose(smooth(np.array([0.0, 1.0, 0.0, 1.0, 4.0]), 2), [0.0, 0.5, 0.5, 0.5, 2.5])
    np.testing.assert_allclose(smooth(np.array([3.0, 1.0]), 1), [3.0, 1.0])
    assert main(["plot", str(seeds_run), "-o", str(tmp_path / "s.png"), "--smooth", "0"]) == 2
    assert "--smooth 0: give the number of points to average" in capsys.readouterr().err


def test_the_adaptation_axis_names_each_kind_once_with_its_algorithms():
    from metarl.plotting import adaptation_label

    assert adaptation_label(["adaptation steps (maml-trpo)", "adaptation steps (maml-ppo)"]) == "adaptation steps"
    assert adaptation_label(["episode in the trial (pearl)", "adaptation steps (maml-trpo)",
                             "episode in the trial (rl2-ppo)", "episode in the trial (pearl)"]) == \
        "episode in the trial (pearl, rl2-ppo) /\nadaptation steps (maml-trpo)"


def test_plot_reads_a_resumed_runs_logs_without_tensorboards_restart_warning(seeds_run, tmp_path, caplog):
    """A run resumed from a checkpoint logs again the iterations after it; TensorBoard keeps the newer points and
    warns of "a TensorFlow restart", which a plot of a resumed run should not show."""
    import logging
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    from metarl.plotting import _scalars

    run = tmp_path / "resumed"
    shutil.copytree(seeds_run / "seed_0", run)
    tag, steps, _ = _scalars(run, ["rollout/return_after_adaptation"])
    assert len(steps) >= 2
    # as metarl's logger resumes: a restart marker at the first step logged again, then the steps from there
    with SummaryWriter(str(run), purge_step=int(steps[-2]), filename_suffix=".resumed") as writer:
        for step in steps[-2:]:
            writer.add_scalar(tag, 123.0, int(step))
    with caplog.at_level(logging.WARNING):
        assert main(["plot", str(run), "-o", str(tmp_path / "r.png")]) == 0
    assert not [r for r in caplog.records if "restart" in r.getMessage()]
    _, again, values = _scalars(run, [tag])
    assert list(again) == list(steps) and values[-1] == 123.0, "the points logged after the resume replace the old"


def test_plot_counts_a_seed_once(seeds_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "twice.png"
    assert main(["plot", str(seeds_run), str(seeds_run / "seed_0"), "-o", str(out)]) == 0
    assert "seed_0 is given twice: drawn once" in capsys.readouterr().err and out.is_file()
    copy = tmp_path / "copy_of_seed_0"
    shutil.copytree(seeds_run / "seed_0", copy)
    assert main(["plot", str(seeds_run), str(copy), "-o", str(out)]) == 0
    assert "repeats seed 0 of" in capsys.readouterr().err
    from metarl.plotting import _group, find_runs
    groups = _group(find_runs([seeds_run, seeds_run / "seed_0", copy]))
    assert [len(runs) for _, runs in groups] == [3], "a seed given twice counts once"


def test_plot_groups_a_run_of_an_older_version_with_its_seeds(seeds_run, tmp_path):
    import shutil

    old = tmp_path / "older" / "seed_3"
    shutil.copytree(seeds_run / "seed_0", old)
    text = (old / "config.yaml").read_text().replace("seed: 0", "seed: 3")
    assert "metatest_protocol: own" in text  # a setting added after some runs were made, at its default
    (old / "config.yaml").write_text(text.replace("metatest_protocol: own\n", ""))
    from metarl.plotting import _group, find_runs
    groups = _group(find_runs([seeds_run, old]))
    assert [len(runs) for _, runs in groups] == [4], "a setting missing from an older run counts as its default"
    other = tmp_path / "retested" / "seed_4"  # meta-tested on more tasks: the same learning curve's settings
    shutil.copytree(seeds_run / "seed_0", other)
    text = (other / "config.yaml").read_text().replace("seed: 0", "seed: 4")
    assert "metatest_tasks:" in text
    (other / "config.yaml").write_text(text.replace("metatest_tasks:", "metatest_tasks: 999 #"))
    assert [len(runs) for _, runs in _group(find_runs([seeds_run, old, other]))] == [5]


def test_a_video_that_cannot_be_made_is_refused_before_the_meta_test(tmp_path, capsys):
    bandit = tmp_path / "bandit"
    assert main(["train", "--algo", "maml-trpo", "--env", "metarl/BernoulliBandit-v0", "--env-kwargs", "k=3", "n=5",
                 *TINY["maml-trpo"], "--iterations", "1", "--logdir", str(bandit), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(bandit), "--video", str(tmp_path / "b.mp4")]) == 2
    captured = capsys.readouterr()
    assert "nothing to picture: leave --video out" in captured.err
    assert "adaptation steps" not in captured.out, "refused before the meta-test ran"


def test_evaluate_imports_the_users_family_module_from_the_working_directory(tmp_path):
    from tests.test_cli import _readme_example

    (tmp_path / "my_families.py").write_text(_readme_example())
    train = subprocess.run([sys.executable, "-m", "metarl.cli", "train", "--env", "my_families:PointLine-v0",
                            "--iterations", "1", "--logdir", "run", *MAML, "--no-progress"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=300)
    assert train.returncode == 0, train.stderr
    evaluated = subprocess.run([sys.executable, "-m", "metarl.cli", "evaluate", "run", "--tasks", "2"],
                               capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "adaptation steps" in evaluated.stdout


def test_a_multi_seed_run_stopped_in_its_first_seed_resumes_every_seed(tmp_path, capsys):
    from metarl.errors import TrainingInterrupted

    class CtrlCAtTwo(metarl.BaseCallback):
        def on_iteration_end(self, state) -> bool:
            if state.iteration == 2 and state.seed == 0:
                raise KeyboardInterrupt  # as a second Ctrl-C would, mid-run
            return True

    parent = tmp_path / "ms"
    settings = dict(iterations=3, meta_batch_size=2, episodes_per_task=2, hidden_sizes=[8], metatest_tasks=2,
                    metatest_steps=1, cg_iters=2, max_episode_steps=8)
    with pytest.raises(KeyboardInterrupt):
        metarl.train("maml-trpo", NAV, seed=[0, 1], logdir=parent, callbacks=[CtrlCAtTwo()], **settings)
    assert not (parent / "seed_1").exists(), "seed 1 had not started"
    assert main(["train", "--resume", str(parent), "--no-progress"]) == 0
    summary = json.loads((parent / "metatest_summary.json").read_text())
    assert summary["seeds"] == [0, 1], "the parent's resume finishes every seed, also the one not started"
    for seed in (0, 1):
        assert json.loads((parent / f"seed_{seed}" / "metatest.json").read_text())["iterations"] == 3
    fresh = tmp_path / "fresh"
    metarl.train("maml-trpo", NAV, seed=1, logdir=fresh, **settings)
    assert json.loads((fresh / "metatest.json").read_text())["returns_by_step"] == \
        json.loads((parent / "seed_1" / "metatest.json").read_text())["returns_by_step"], "the same run as alone"

    class Interrupt(metarl.BaseCallback):
        def on_iteration_end(self, state) -> bool:
            if state.seed == 0:
                raise TrainingInterrupted(state.logdir, state.iteration)
            return True

    other = tmp_path / "other"
    with pytest.raises(TrainingInterrupted) as stopped:
        metarl.train("maml-trpo", NAV, seed=[0, 1], logdir=other, callbacks=[Interrupt()], **settings)
    assert stopped.value.logdir == other, "the hint resumes the parent, not seed_0"
    assert main(["train", "--resume", str(other), "--seed", "0", "2", "--no-progress"]) == 2
    assert "cannot change the seeds" in capsys.readouterr().err


@pytest.mark.parametrize("algo,tags", [
    ("maml-trpo", ["rollout/success_rate_before_adaptation", "rollout/success_rate_after_adaptation"]),
    ("rl2-ppo", ["rollout/first_episode_success_rate", "rollout/success_rate_after_adaptation"]),
    ("pearl", ["rollout/prior_success_rate", "rollout/success_rate_after_adaptation"]),
])
def test_training_logs_success_rates_that_plot_draws_on_families_with_a_goal(algo, tags, tmp_path):
    from tests.test_entry_points import TINY

    run = tmp_path / algo
    assert main(["train", "--algo", algo, "--env", "metarl/SparsePointRobot-v0", *TINY[algo], "--iterations", "2",
                 "--logdir", str(run), "--no-progress"]) == 0
    from metarl.plotting import _scalars
    for tag in tags:
        _, steps, values = _scalars(run, [tag])
        assert len(values) == 2 and np.all((0.0 <= values) & (values <= 1.0))
    assert main(["plot", str(run), "-o", str(tmp_path / "success.png"), "--tag", tags[-1]]) == 0
    from metarl.plotting import _adaptation_curve  # with success tags the adaptation panel draws meta-test success
    result = json.loads((run / "metatest.json").read_text())
    axis, success, _ = _adaptation_curve(result, success=True)
    key = {"maml-trpo": "success_rate_by_step", "rl2-ppo": "rl2_success_rate_by_episode"}.get(algo,
                                                                                              "success_rate_by_episode")
    assert list(success) == result[key] and np.all((0.0 <= success) & (success <= 1.0))
    assert axis == ("adaptation steps" if algo == "maml-trpo" else "episode in the trial")
    nav = tmp_path / "nav"  # no success criterion: no success tags
    assert main(["train", "--algo", algo, "--env", NAV, *TINY[algo], "--iterations", "1", "--logdir", str(nav),
                 "--no-progress"]) == 0
    assert _scalars(nav, tags) is None
