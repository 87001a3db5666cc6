"""The paper's equations (KL-RPN §2), elementwise: no reduction, any shape.

Notation (paper §2.2-2.5): the network predicts, per anchor and per box offset (x, y, w, h),
a Gaussian Q = N(mu, sigma^2) with ``log_var`` = beta = log(sigma^2). Positive anchors have the
target P = delta(x - mu_target) (eq. 5), mu_target being the box-coder offset of the matched
ground truth; negative anchors have the target P = N(0, neg_var), neg_var = 1/3 (§2.2).

The losses keep only the terms of the KL divergence that depend on (mu, beta): eq. 3 (or eq. 6)
minus constants, with the squared-mean term scaled by gamma (= 1/2 in the paper). With
gamma = 1 they are exactly KL(P || Q) + const.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Figure 3 and NMS rank by eq. 10; eps as in the paper.
OBJECTNESS_EPS = 1e-12


def kl_pos_loss(mu: Tensor, log_var: Tensor, mu_target: Tensor, gamma: float = 0.5) -> Tensor:
    """Eq. 7, the loss of a positive anchor (Dirac target at ``mu_target``).

    L_pos = exp(-beta) * gamma * (mu_target - mu)^2 / 2 + beta / 2
    """
    return 0.5 * torch.exp(-log_var) * gamma * (mu_target - mu) ** 2 + 0.5 * log_var  # eq. 7


def kl_neg_loss(mu: Tensor, log_var: Tensor, gamma: float = 0.5, neg_var: float = 1.0 / 3.0) -> Tensor:
    """Eq. 4, the loss of a negative anchor (target N(0, neg_var)).

    L_neg = exp(-beta) * (gamma * mu^2 + neg_var) / 2 + beta / 2;
    minimised over beta at sigma^2 = gamma * mu^2 + neg_var.
    """
    return 0.5 * torch.exp(-log_var) * (gamma * mu**2 + neg_var) + 0.5 * log_var  # eq. 4


def objectness(log_var: Tensor, eps: float = OBJECTNESS_EPS) -> Tensor:
    """Eq. 10 as a natural logarithm: ``log(1 / (sigma_x * sigma_y * sigma_w * sigma_h + eps))``.

    ``log_var``: ``[..., 4]`` predicted log-variances (x, y, w, h); returns ``[...]`` in float32.
    sigma_x*sigma_y*sigma_w*sigma_h = exp(sum(log_var) / 2), so the score is
    ``-logaddexp(sum(log_var) / 2, log(eps))``: no exp of a large number, finite for any finite
    input in any dtype, and, log being increasing, it ranks proposals exactly as eq. 10 does.
    """
    half_log_prod = 0.5 * log_var.float().sum(dim=-1)
    return -torch.logaddexp(half_log_prod, torch.full_like(half_log_prod, math.log(eps)))  # eq. 10
