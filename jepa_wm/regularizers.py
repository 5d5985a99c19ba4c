"""Anti-collapse terms. Each is a pure function of embeddings flattened to (M, D), or a small head.

Without them, predicting one's own embeddings is solved by a constant encoder; each term removes
that solution in a different way, and each has its own weight in the model config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from jepa_wm.layers import mlp
from jepa_wm.registry import Registry


def token_groups(z: torch.Tensor) -> torch.Tensor:
    """Embeddings (B, T, N, D) -> (N, B*T, D): the samples of each token position, as one group each.

    Batch statistics are taken per token position and then averaged: pooled over positions, an
    encoder could meet the variance hinge with embeddings that are constant across samples and differ
    only from one token position to the next.
    """
    return z.permute(2, 0, 1, 3).flatten(1, 2)


def _grouped(z: torch.Tensor) -> torch.Tensor:
    return z[None] if z.ndim == 2 else z  # (M, D) is one group


def vicreg_variance(z: torch.Tensor, target_std: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's variance hinge: mean over dimensions (and groups) of relu(target_std - std over samples).

    z (M, D) or (G, M, D) -> scalar.
    """
    std = torch.sqrt(_grouped(z).var(dim=-2) + eps)  # (G, D)
    return torch.relu(target_std - std).mean()


def vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    """VICReg's covariance term: squared off-diagonal covariances / D, averaged over groups.

    Decorrelates dimensions. z (M, D) or (G, M, D) -> scalar.
    """
    z = _grouped(z)
    count, dim = z.shape[-2:]
    centred = z - z.mean(dim=-2, keepdim=True)  # (G, M, D)
    covariance = centred.transpose(-1, -2) @ centred / max(count - 1, 1)  # (G, D, D)
    off_diagonal = covariance - torch.diag_embed(torch.diagonal(covariance, dim1=-2, dim2=-1))
    return (off_diagonal.pow(2).sum(dim=(-2, -1)) / dim).mean()


def sigreg(z: torch.Tensor, num_projections: int = 256, num_points: int = 17, generator: torch.Generator | None = None) -> torch.Tensor:
    """SIGReg (LeJEPA, Balestriero & LeCun 2025): Epps-Pulley test of random 1-D projections vs N(0, 1).

    For each random unit direction u, compares the empirical characteristic function of z @ u with
    the standard normal's exp(-t^2/2), weighted by exp(-t^2/2) and integrated over t in [-5, 5]; the
    statistic is scaled by M and averaged over directions (and groups). Zero only for an isotropic
    Gaussian, so it rules out collapse (and any other degenerate shape) with one weight and no EMA or
    stop-gradient. z (M, D) or (G, M, D) -> scalar.
    """
    z = _grouped(z)
    count, dim = z.shape[-2:]
    directions = torch.randn(dim, num_projections, device=z.device, dtype=z.dtype, generator=generator)
    directions = directions / directions.norm(dim=0, keepdim=True)  # (D, P) unit columns
    t = torch.linspace(-5.0, 5.0, num_points, device=z.device, dtype=z.dtype)  # (Q,)
    gaussian = torch.exp(-0.5 * t**2)  # (Q,) characteristic function of N(0, 1), also the weight
    phase = (z @ directions).unsqueeze(-1) * t  # (G, M, P, Q)
    real, imaginary = torch.cos(phase).mean(dim=-3), torch.sin(phase).mean(dim=-3)  # (G, P, Q)
    squared_error = (real - gaussian).pow(2) + imaginary.pow(2)  # (G, P, Q)
    statistic = torch.trapezoid(squared_error * gaussian, t, dim=-1) * count  # (G, P)
    return statistic.mean()


class InverseDynamicsHead(nn.Module):
    """Predicts the action a_t from (z_t, z_t+1): embeddings must keep what the agent's actions change.

    In EB-JEPA's ablations removing this term dropped planning success from ~97% to ~1%.
    """

    def __init__(self, embed_dim: int, num_tokens: int, action_dim: int, hidden_dim: int = 256):
        super().__init__()
        self.net = mlp(2 * embed_dim * num_tokens, hidden_dim, action_dim, depth=2)

    def forward(self, z_now: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        """z_now, z_next (B, T, N, D) -> actions (B, T, A) in [-1, 1]."""
        return torch.tanh(self.net(torch.cat([z_now.flatten(2), z_next.flatten(2)], dim=-1)))


def temporal_smoothness(z: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between consecutive frames' embeddings. z (B, T, N, D) -> scalar."""
    return (z[:, 1:] - z[:, :-1]).pow(2).sum(dim=(-2, -1)).mean()


def slowness(z: torch.Tensor, z_all: torch.Tensor | None = None) -> torch.Tensor:
    """Scale-free temporal smoothness: consecutive frames' mean squared step over twice the embeddings'
    total variance, averaged over token positions. z (B, T, N, D) -> scalar in [0, ~2].

    For a stationary sequence this is 1 - (lag-1 autocorrelation): small when embeddings move little
    from one frame to the next *relative to how far apart the data's states are*, as in slow feature
    analysis. Unlike ``temporal_smoothness`` it cannot be lowered by shrinking the embeddings, so it
    does not fight the variance terms; it makes latent distance grow with the number of steps between
    states, which is what a planner minimising the distance to a far goal needs. The variance comes
    from ``z_all`` (the global batch under DDP) when given.
    """
    step = (z[:, 1:] - z[:, :-1]).pow(2).sum(dim=-1).mean()  # mean over samples, frames, tokens
    groups = token_groups(z if z_all is None else z_all)  # (N, M, D)
    variance = groups.var(dim=-2).sum(dim=-1).mean()  # total variance per token position, averaged
    return step / (2 * variance).clamp_min(1e-8)


# ------------------------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Term:
    """An anti-collapse term as training uses it.

    ``compute(model, z, z_all, actions)`` maps the batch's embeddings z (B, L, N, D), the global batch's z_all
    (B_all, L, N, D) and actions (B, L-1, A) to a scalar: terms made of batch statistics use z_all, so N
    processes under DDP train what one process would with N times the batch; per-sample means use z (DDP's
    gradient average makes them global). ``head(model)`` builds a module the term trains, kept as
    ``model.<name>`` while the term's weight is above 0.
    """

    compute: Callable
    head: Callable | None = None


# Terms by their weight's name under model.regularizers (the model's YAML lists every weight, 0 = off).
REGULARIZERS = Registry("anti-collapse term", "model.regularizers")


def register_term(name: str, head: Callable | None = None):
    def add(compute: Callable) -> Callable:
        REGULARIZERS.register(name)(Term(compute, head))
        return compute

    return add


register_term("vicreg_variance")(lambda model, z, z_all, actions: vicreg_variance(token_groups(z_all)))
register_term("vicreg_covariance")(lambda model, z, z_all, actions: vicreg_covariance(token_groups(z_all)))
register_term("sigreg")(lambda model, z, z_all, actions: sigreg(
    token_groups(z_all), num_projections=model.cfg["sigreg_projections"], generator=model.step_generator(z.device)))
register_term("inverse_dynamics", head=lambda model: InverseDynamicsHead(model.embed_dim, model.num_tokens,
                                                                         model.action_dim))(
    lambda model, z, z_all, actions: F.mse_loss(model.inverse_dynamics(z[:, :-1], z[:, 1:]), actions))
register_term("temporal")(lambda model, z, z_all, actions: temporal_smoothness(z))
register_term("slowness")(lambda model, z, z_all, actions: slowness(z, z_all))
