"""Discounted returns, GAE and masked normalisation against hand computations."""

from __future__ import annotations

import pytest
import torch

from metarl.returns import discounted_returns, gae, masked_mean, masked_normalize


def test_discounted_returns_by_hand_with_mask():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 99.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # last step is after the episode ended
    out = discounted_returns(rewards, mask, gamma=0.5)
    torch.testing.assert_close(out, torch.tensor([[1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0, 0.0]]))


def test_gae_lambda_one_is_returns_minus_values():
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    mask = torch.ones(3, 7)
    mask[1, 5:] = 0
    adv = gae(rewards, values, mask, gamma=0.9, lam=1.0)
    torch.testing.assert_close(adv, (discounted_returns(rewards, mask, 0.9) - values) * mask, atol=1e-5, rtol=0)


def test_gae_lambda_zero_is_td_error_and_bootstrap():
    rewards = torch.tensor([[1.0, 1.0]])
    values = torch.tensor([[0.5, 2.0]])
    mask = torch.ones(1, 2)
    adv = gae(rewards, values, mask, gamma=0.9, lam=0.0)
    torch.testing.assert_close(adv, torch.tensor([[1 + 0.9 * 2.0 - 0.5, 1 - 2.0]]))
    adv_boot = gae(rewards, values, mask, gamma=0.9, lam=0.0, last_values=torch.tensor([10.0]))
    assert adv_boot[0, 1] == pytest.approx(1 + 9.0 - 2.0)


def test_gae_by_hand():
    r, v, gam, lam = [1.0, 0.0, 2.0], [0.1, 0.2, 0.3], 0.9, 0.8
    d = [r[0] + gam * v[1] - v[0], r[1] + gam * v[2] - v[1], r[2] - v[2]]
    expected = [d[0] + gam * lam * (d[1] + gam * lam * d[2]), d[1] + gam * lam * d[2], d[2]]
    out = gae(torch.tensor([r]), torch.tensor([v]), torch.ones(1, 3), gam, lam)
    torch.testing.assert_close(out, torch.tensor([expected]))


def test_masked_normalize_per_task():
    x = torch.tensor([[[1.0, 2.0, 100.0]], [[5.0, 7.0, 9.0]]])
    mask = torch.tensor([[[1.0, 1.0, 0.0]], [[1.0, 1.0, 1.0]]])
    out = masked_normalize(x, mask, dim=(1, 2))
    assert out[0, 0, 2] == 0
    for k in range(2):
        m = mask[k].bool()
        assert out[k][m].mean().abs() < 1e-6
        assert masked_mean(out[k] ** 2, mask[k]) == pytest.approx(1.0, abs=1e-4)


def test_bad_discount():
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(torch.zeros(1, 2), torch.ones(1, 2), gamma=1.5)
