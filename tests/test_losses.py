"""klrpn.losses against the paper's equations 3, 4, 7 and 10."""

import math

import pytest
import torch
from scipy.optimize import minimize_scalar
from torch.distributions import Normal, kl_divergence

from klrpn.losses import kl_neg_loss, kl_pos_loss, objectness


def _random(shape=(64, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g, dtype=torch.float64)
    log_var = torch.randn(shape, generator=g, dtype=torch.float64)
    target = torch.randn(shape, generator=g, dtype=torch.float64)
    return mu, log_var, target


def test_kl_pos_loss_is_eq7():
    mu, beta, target = _random()
    expected = torch.exp(-beta) * 0.5 * (target - mu) ** 2 / 2 + beta / 2
    torch.testing.assert_close(kl_pos_loss(mu, beta, target), expected, rtol=0, atol=1e-15)
    assert kl_pos_loss(mu, beta, target).shape == mu.shape  # elementwise


def test_kl_neg_loss_is_eq4():
    mu, beta, _ = _random()
    expected = torch.exp(-beta) * (0.5 * mu**2 + 1 / 3) / 2 + beta / 2
    torch.testing.assert_close(kl_neg_loss(mu, beta), expected, rtol=0, atol=1e-15)


def test_hand_computed_values():
    # mu = 1, beta = 0, target 3, gamma 1/2: e^0 * 0.5 * 4 / 2 + 0 = 1
    assert kl_pos_loss(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(3.0)).item() == 1.0
    # mu = 2, beta = log 2: (0.5 * 4 + 1/3) / 2 / 2 + log(2) / 2
    got = kl_neg_loss(torch.tensor(2.0, dtype=torch.float64), torch.tensor(math.log(2), dtype=torch.float64))
    assert got.item() == pytest.approx((2 + 1 / 3) / 4 + math.log(2) / 2, abs=1e-15)



@pytest.mark.parametrize("kind", ["pos", "neg"])
def test_gamma_one_gradients_equal_analytic_gaussian_kl(kind):
    """Eq. 3 through torch.distributions: with gamma = 1 the gradients in mu and beta agree."""
    mu, beta, target = _random(seed=1)
    mu.requires_grad_(True)
    beta.requires_grad_(True)
    q = Normal(mu, torch.exp(beta / 2))
    if kind == "pos":  # Dirac target (eq. 5): a Gaussian of vanishing width
        p = Normal(target, torch.full_like(target, 1e-12))
        ours = kl_pos_loss(mu, beta, target, gamma=1.0)
    else:  # N(0, 1/3) target
        p = Normal(torch.zeros_like(mu), torch.full_like(mu, math.sqrt(1 / 3)))
        ours = kl_neg_loss(mu, beta, gamma=1.0)
    ours_grad = torch.autograd.grad(ours.sum(), (mu, beta))
    ref_grad = torch.autograd.grad(kl_divergence(p, q).sum(), (mu, beta))
    for a, b in zip(ours_grad, ref_grad):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mu,gamma", [(0.0, 0.5), (1.5, 0.5), (-2.0, 0.5), (0.7, 1.0)])
def test_negative_loss_minimised_at_predicted_variance(mu, gamma):
    res = minimize_scalar(lambda b: kl_neg_loss(torch.tensor(mu, dtype=torch.float64),
                                                torch.tensor(b, dtype=torch.float64), gamma).item(),
                          bracket=(-5, 5), tol=1e-12)
    assert math.exp(res.x) == pytest.approx(gamma * mu**2 + 1 / 3, rel=1e-6)


def test_objectness_ranks_like_eq10():
    _, log_var, _ = _random(shape=(500, 4), seed=2)
    sigma = torch.exp(log_var / 2)
    eq10 = 1.0 / (sigma.prod(dim=-1) + 1e-12)
    score = objectness(log_var)
    assert torch.equal(torch.argsort(score, descending=True), torch.argsort(eq10, descending=True))
    torch.testing.assert_close(score.double(), torch.log(eq10), rtol=1e-6, atol=1e-6)


def test_objectness_caps_at_eps():
    # sigma -> 0: eq. 10 -> 1 / 1e-12, i.e. log score -> -log(1e-12)
    assert objectness(torch.full((1, 4), -200.0)).item() == pytest.approx(-math.log(1e-12), rel=1e-6)


def test_objectness_finite_under_bf16_autocast():
    log_var = torch.tensor([[-90.0] * 4, [0.0] * 4, [90.0] * 4, [60.0, -60.0, 30.0, 1.0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        score = objectness(log_var.to(torch.bfloat16))
    assert torch.isfinite(score).all()
    assert score.dtype == torch.float32
    assert score[0] > score[1] > score[2]  # smaller sigma, higher objectness
