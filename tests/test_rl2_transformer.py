"""RL^2's transformer memory: the cache acts as a full recomputation would, no step sees the future or another
trial, bad settings are one line, and through the console command the same seed gives the same curve, a resume
continues it exactly, and a short run learns a two-armed bandit."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch

import metarl
from metarl.agents.rl2_transformer import TransformerActorCritic, banded_attention
from metarl.cli import main
from tests.conftest import requires_extra
from tests.test_save_load import scalars

BANDIT = ["--env", "metarl/BernoulliBandit-v0", "--env-kwargs", "k=2", "n=10"]
TINY = ["--meta-batch-size", "16", "--num-minibatches", "2", "--transformer-width", "16", "--transformer-layers", "1",
        "--metatest-tasks", "20", "--no-progress"]


def _net(context: int = 0, positions: str = "sinusoidal", space: gym.Space | None = None) -> TransformerActorCritic:
    torch.manual_seed(0)
    return TransformerActorCritic(6, space or gym.spaces.Box(-1, 1, (2,)), width=16, layers=2, heads=4,
                                  context_length=context, positional_encoding=positions, max_length=40).eval()


@pytest.mark.parametrize("steps, window", [(30, 4), (31, 4), (5, 8), (64, 16), (9, 1)])
def test_banded_attention_equals_the_masked_full_attention(steps, window):
    """Long trials attend in bands of 2 x window keys per query (a Meta-World trial is 5000 steps): the same
    outputs and gradients as the T x T masked attention."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, steps, 8, requires_grad=True) for _ in range(3))
    positions = torch.arange(steps)
    allowed = (positions[None, :] <= positions[:, None]) & (positions[None, :] > positions[:, None] - window)
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    banded = banded_attention(q, k, v, window)
    torch.testing.assert_close(banded, full, atol=1e-6, rtol=0)
    weights = torch.randn_like(full)
    grads_full = torch.autograd.grad((full * weights).sum(), (q, k, v))
    grads_banded = torch.autograd.grad((banded * weights).sum(), (q, k, v))
    for a, b in zip(grads_banded, grads_full):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("context", [0, 1, 4])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "none"])
def test_the_cache_acts_as_a_full_recomputation_of_the_context(context, positions):
    net = _net(context, positions)
    x = torch.randn(5, 30, 6)
    dist, values, _ = net(x)
    state, means = net.initial_state(5), []
    for t in range(30):
        step_dist, state = net.step(x[:, t], state)
        means.append(step_dist.mean)
    torch.testing.assert_close(torch.stack(means, 1), dist.mean, atol=1e-5, rtol=0)
    # a row whose trial ended stores nothing more
    active = torch.tensor([True, False, True, True, True])
    state = net.initial_state(5)
    for t in range(10):
        _, state = net.step(x[:, t], state, active if t >= 5 else None)
    assert state.length.tolist() == [10, 5, 10, 10, 10]


def test_a_stopped_row_continues_from_its_own_position():
    net = _net()
    x = torch.randn(2, 8, 6)
    state = net.initial_state(2)
    active = torch.tensor([True, False])
    for t in range(4):  # row 1 takes steps 0, 1 then pauses for two steps, then resumes with its step 2
        state_active = None if t < 2 else active
        _, state = net.step(x[:, t] if t < 2 else torch.stack([x[0, t], x[1, 2]]), state, state_active)
    last, state = net.step(torch.stack([x[0, 4], x[1, 2]]), state)
    full, _, _ = net(x[1:2, :3])
    torch.testing.assert_close(last.mean[1], full.mean[0, 2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("context", [0, 3])
def test_no_step_attends_to_the_future_or_to_another_trial(context):
    net = _net(context)
    x = torch.randn(3, 12, 6)
    base, _, _ = net(x)
    changed = x.clone()
    changed[0, 7] += 5.0  # row 0's step 7
    other, _, _ = net(changed)
    torch.testing.assert_close(other.mean[0, :7], base.mean[0, :7], atol=0, rtol=0)  # earlier steps: untouched
    assert not torch.allclose(other.mean[0, 7:], base.mean[0, 7:])
    torch.testing.assert_close(other.mean[1:], base.mean[1:], atol=0, rtol=0)  # other trials: untouched
    if context:  # beyond the receptive field of two layers of windows the change is forgotten
        reach = 7 + 2 * (context - 1) + 1
        torch.testing.assert_close(other.mean[0, reach:], base.mean[0, reach:], atol=1e-6, rtol=0)
        assert not torch.allclose(other.mean[0, reach - 1], base.mean[0, reach - 1])
    padded = torch.cat([x, torch.randn(3, 5, 6)], dim=1)  # padding after a trial's end is never attended to
    torch.testing.assert_close(net(padded)[0].mean[:, :12], base.mean, atol=1e-6, rtol=0)


def test_bad_settings_are_one_line_and_a_short_context_is_allowed(tmp_path, capsys):
    assert main(["train", "--algo", "rl2-transformer", *BANDIT, *TINY, "--iterations", "1", "--transformer-width", "10",
                 "--transformer-heads", "4", "--logdir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "transformer_heads=4 does not divide transformer_width=10" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--algo", "rl2-transformer", *BANDIT, "--context-length", "3", "--iterations", "1",
                 "--logdir", str(tmp_path / "short"), *TINY]) == 0, "a context shorter than an episode trains"
    with pytest.raises(ValueError, match="does not divide"):
        _net(space=None).__class__(6, gym.spaces.Discrete(2), width=10, heads=4)


def test_one_setting_switches_the_memory_and_help_lists_its_settings(capsys):
    from metarl.launcher import resolve_run

    _, gru, _, _ = resolve_run("train", ["--algo", "rl2-ppo", *BANDIT])
    _, transformer, _, _ = resolve_run("train", ["--algo", "rl2-ppo", *BANDIT, "--memory", "transformer"])
    assert (gru.memory, transformer.memory) == ("gru", "transformer")
    assert {k: v for k, v in vars(gru).items() if k != "memory"} == \
        {k: v for k, v in vars(transformer).items() if k != "memory"}, "the rest of the run is the same"
    _, own, _, _ = resolve_run("train", ["--algo", "rl2-transformer", *BANDIT, "--env-kwargs", "k=5", "n=100"])
    assert own.memory == "transformer" and own.meta_batch_size == 256 and own.reward_scale == pytest.approx(0.1), \
        "rl2-transformer keeps the bandit preset's scaling with n"
    with pytest.raises(SystemExit):
        main(["train", "--algo", "rl2-transformer", *BANDIT, "--help"])
    shown = capsys.readouterr().out
    assert "--context-length" in shown and "--hidden-size" not in shown


def test_same_seed_same_curve_and_resume_continues_exactly(tmp_path):
    runs = {}
    for name, iterations in (("a", 3), ("b", 3), ("part", 2)):
        runs[name] = tmp_path / name
        assert main(["train", "--algo", "rl2-transformer", *BANDIT, "--iterations", str(iterations), "--logdir",
                     str(runs[name]), *TINY]) == 0
    assert main(["train", "--resume", str(runs["part"]), "--iterations", "3", "--no-progress"]) == 0
    tag = "rollout/trial_return"
    assert len(scalars(runs["a"], tag)) == 3
    assert scalars(runs["a"], tag) == scalars(runs["b"], tag) == scalars(runs["part"], tag)
    result = json.loads((runs["a"] / "metatest.json").read_text())
    assert result == {**json.loads((runs["part"] / "metatest.json").read_text()), "train_seconds": result["train_seconds"]}
    assert main(["evaluate", str(runs["a"]), "--tasks", "5"]) == 0
    assert main(["plot", str(runs["a"]), str(runs["b"]), "-o", str(tmp_path / "curves.png")]) == 0
    policy = metarl.load(runs["a"])
    env = gym.make("metarl/BernoulliBandit-v0", k=2, n=10)
    adapted = policy.adapt(env, episodes=0, seed=0)
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(adapted.act(obs))


@pytest.mark.slow
def test_a_short_run_learns_a_two_armed_bandit(tmp_path):
    logdir = tmp_path / "learn"
    assert main(["train", "--algo", "rl2-transformer", "--env", "metarl/BernoulliBandit-v0", "--env-kwargs", "k=2",
                 "n=10", "--iterations", "40", "--meta-batch-size", "256", "--metatest-tasks", "1000",
                 "--logdir", str(logdir), "--no-progress"]) == 0
    table = json.loads((logdir / "metatest.json").read_text())["mean_total_return"]
    assert table["rl2"] > table["random"] + 0.4, table
    assert table["rl2"] > 0.95 * table["gittins"], table


@pytest.mark.slow
@requires_extra("ray")
def test_the_transformer_samples_on_ray_workers_with_the_local_curve(tmp_path):
    for name, extra in (("local", []), ("ray", ["--sampler", "ray", "--num-workers", "2"])):
        assert main(["train", "--algo", "rl2-transformer", *BANDIT, "--iterations", "2", "--logdir",
                     str(tmp_path / name), *TINY, *extra]) == 0
    tag = "rollout/trial_return"
    assert scalars(tmp_path / "local", tag) == scalars(tmp_path / "ray", tag)


def test_memory_benchmark_times_the_banded_against_the_masked_update(tmp_path):
    """The documented benchmark command (small sizes): both passes run in one process and agree."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "memory.json"
    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_memory.py"
    proc = subprocess.run([sys.executable, str(script), "--batch", "1", "--recompute-steps", "5",
                           "--update", "--update-trials", "2", "--update-steps", "64", "--window", "8",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "masked / banded" in proc.stdout
    update = json.loads(out.read_text())["update"]
    assert update["max_abs_difference"] < 1e-5 and update["banded_seconds"] > 0
