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


def rank_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of two 1-D tensors (ties broken by order)."""
    def ranks(values: torch.Tensor) -> torch.Tensor:
        return values.argsort().argsort().double()

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return ((rx * ry).sum() / (rx.norm() * ry.norm()).clamp_min(1e-12)).float()


def distance_rank_correlation(z: torch.Tensor, coordinates: torch.Tensor, max_frames: int = 1024) -> torch.Tensor:
    """Rank correlation between latent and true distances over all pairs of (at most ``max_frames``) frames.

    z (M, F) flattened embeddings, coordinates (M, C) their true goal coordinates. The latent distance is
    the L2 distance, whose ranks equal those of the planning cost (a mean squared error).
    """
    z, coordinates = z[:max_frames].double(), coordinates[:max_frames].double()
    pairs = torch.triu_indices(len(z), len(z), offset=1)
    latent = torch.cdist(z, z)[pairs[0], pairs[1]]
    true = torch.cdist(coordinates, coordinates)[pairs[0], pairs[1]]
    return rank_correlation(latent, true)
