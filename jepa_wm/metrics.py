"""What to watch while training: collapse monitors and a linear probe of the true state."""

from __future__ import annotations

import torch


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the per-dimension std over samples of z (M, D) or (G, M, D): near zero
    means collapse."""
    return z.std(dim=-2).mean()


def effective_rank(z: torch.Tensor) -> torch.Tensor:
    """exp(entropy of the normalised singular values) of centred z (Roy & Vetterli, 2007).

    Counts the directions embeddings actually use: 1 for a line, D for an isotropic cloud. z (M, D),
    or (G, M, D) for groups of samples (one per token position), whose ranks are averaged.
    """
    z = z[None] if z.ndim == 2 else z
    singular_values = torch.linalg.svdvals(z - z.mean(dim=-2, keepdim=True))  # (G, min(M, D))
    p = singular_values / singular_values.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1)  # (G,)
    return torch.exp(entropy).mean()


def linear_probe_r2(train_z, train_y, test_z, test_y, ridge: float = 1e-3) -> torch.Tensor:
    """R^2 on (test_z, test_y) of a ridge regression fit on (train_z, train_y), averaged over targets.

    High R^2 means the true physical state is linearly readable from the embeddings.
    """
    train_z, test_z = train_z.double(), test_z.double()
    mean, std = train_z.mean(dim=0), train_z.std(dim=0).clamp_min(1e-6)

    def features(z: torch.Tensor) -> torch.Tensor:  # standardised, with a bias column
        return torch.cat([(z - mean) / std, torch.ones(len(z), 1, dtype=z.dtype)], dim=1)

    x = features(train_z)
    regulariser = ridge * torch.eye(x.shape[1], dtype=x.dtype)
    weights = torch.linalg.solve(x.T @ x + regulariser * len(x), x.T @ train_y.double())  # (F+1, Y)
    prediction = features(test_z) @ weights
    residual = (test_y.double() - prediction).pow(2).sum(dim=0)
    total = (test_y.double() - test_y.double().mean(dim=0)).pow(2).sum(dim=0).clamp_min(1e-12)
    return (1 - residual / total).mean().float()
