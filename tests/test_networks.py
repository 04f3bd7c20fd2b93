"""Policies, value network and the linear feature baseline."""

from __future__ import annotations

import pytest
import torch
from gymnasium import spaces
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Independent, Normal

from metarl.networks import (
    Categorical,
    CategoricalMLPPolicy,
    DiagGaussian,
    GaussianMLPPolicy,
    LinearFeatureBaseline,
    ValueNetwork,
    make_policy,
    mlp,
)


def test_diag_gaussian_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, log_std = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g) * 0.3
    mean2, log_std2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g) * 0.3
    a = torch.randn(5, 3, generator=g)
    ours, ours2 = DiagGaussian(mean, log_std), DiagGaussian(mean2, log_std2)
    ref = Independent(Normal(mean, log_std.exp()), 1)
    ref2 = Independent(Normal(mean2, log_std2.exp()), 1)
    torch.testing.assert_close(ours.log_prob(a), ref.log_prob(a))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(ours.kl(ours2), torch.distributions.kl_divergence(ref, ref2))


def test_categorical_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits, logits2 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    a = torch.tensor([0, 5, 2, 3])
    ours, ref = Categorical(logits), TorchCategorical(logits=logits)
    torch.testing.assert_close(ours.log_prob(a), ref.log_prob(a))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(ours.kl(Categorical(logits2)),
                               torch.distributions.kl_divergence(ref, TorchCategorical(logits=logits2)))
    samples = ours.sample(torch.Generator().manual_seed(1))
    assert samples.shape == (4,) and samples.dtype == torch.int64


def test_policies_from_spaces():
    box = spaces.Box(-1, 1, shape=(3,))
    assert isinstance(make_policy(box, spaces.Box(-1, 1, shape=(2,))), GaussianMLPPolicy)
    assert isinstance(make_policy(box, spaces.Discrete(4)), CategoricalMLPPolicy)
    policy = make_policy(box, spaces.Box(-1, 1, shape=(2,)), hidden=(100, 100), init_std=1.0)
    dist = policy(torch.zeros(7, 3))
    assert dist.mean.shape == (7, 2) and torch.allclose(dist.log_std, torch.zeros(7, 2))
    assert [m.out_features for m in policy.mean_net if hasattr(m, "out_features")] == [100, 100, 2]
    with pytest.raises(ValueError, match="flat Box observations"):
        make_policy(spaces.Discrete(3), spaces.Discrete(2))
    with pytest.raises(ValueError, match="unknown activation"):
        GaussianMLPPolicy(3, 2, activation="gelu-ish")


def test_glorot_init_is_the_original_maml_policy_init():
    """rllab's GlorotUniform weights and zero biases: bound sqrt(6/(fan_in+fan_out)), wider than nn.Linear's."""
    torch.manual_seed(0)
    net = mlp(17, (64, 64), 6, "tanh", init="glorot")
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    for layer in linears:
        fan_out, fan_in = layer.weight.shape
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound  # the whole range is used, not a narrower one
        # uniform on [-bound, bound]: standard deviation bound / sqrt(3)
        assert abs(layer.weight.std().item() - bound / 3 ** 0.5) < 0.15 * bound
    torch.manual_seed(0)
    default = [m for m in mlp(17, (64, 64), 6, "tanh") if isinstance(m, torch.nn.Linear)]
    assert default[-1].weight.abs().max() <= 1 / 64 ** 0.5 < (6 / 70) ** 0.5 / 2
    policy = make_policy(spaces.Box(-1, 1, shape=(17,)), spaces.Box(-1, 1, shape=(6,)), (64, 64), "tanh",
                         init="glorot")
    assert torch.count_nonzero(policy.mean_net[0].bias) == 0
    with pytest.raises(ValueError, match="unknown weight init 'he'"):
        mlp(3, (4,), 2, init="he")


def test_gaussian_policy_acts_in_normalised_action_units():
    """As rllab's normalize wrapper in the original MAML code: init_std is relative to the action range."""
    policy = make_policy(spaces.Box(-1, 1, shape=(2,)), spaces.Box(-0.1, 0.3, shape=(2,)), hidden=(8,), init_std=1.0)
    dist = policy(torch.zeros(4, 2))
    torch.testing.assert_close(dist.log_std.exp(), torch.full((4, 2), 0.2))
    raw = policy.mean_net(torch.zeros(4, 2))
    torch.testing.assert_close(dist.mean, 0.1 + 0.2 * raw)
    unbounded = make_policy(spaces.Box(-1, 1, shape=(2,)), spaces.Box(-float("inf"), float("inf"), shape=(2,)))
    assert torch.equal(unbounded.action_scale, torch.ones(2))


def test_linear_baseline_recovers_linear_returns():
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(2, 5, 10, 3, generator=g)
    mask = torch.ones(2, 5, 10)
    mask[:, :, 8:] = 0
    t = torch.arange(10.0) / 100
    returns = (obs @ torch.tensor([1.0, -2.0, 0.5]) + 3 * t + 1.0) * mask
    values = LinearFeatureBaseline().fit_predict(obs, returns, mask)
    torch.testing.assert_close(values, returns, atol=1e-3, rtol=0)
    assert torch.all(values[..., 8:] == 0)


def test_value_network_shape():
    assert ValueNetwork(4)(torch.zeros(2, 3, 4)).shape == (2, 3)
