"""Small building blocks, declared once; every network in jepa_wm is assembled from these."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, depth: int = 2, layer_norm: bool = True) -> nn.Sequential:
    """``depth`` hidden layers of (Linear, LayerNorm, GELU), then a Linear to ``out_dim``."""
    if depth < 1:
        raise ValueError(f"an MLP needs depth >= 1 hidden layers; got {depth}")
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden_dim), nn.LayerNorm(hidden_dim) if layer_norm else nn.Identity(), nn.GELU()]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose norms are modulated by a conditioning vector (DiT's AdaLN-zero).

    The modulation starts at zero, so a fresh block is the identity: conditioning is learned, not
    imposed at initialisation. Without conditioning (``cond=None``) it is a plain pre-norm block.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, cond_dim: int | None = None):
        super().__init__()
        self.norm_attention = nn.LayerNorm(width, elementwise_affine=cond_dim is None)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width, elementwise_affine=cond_dim is None)
        self.mlp = nn.Sequential(nn.Linear(width, int(width * mlp_ratio)), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(int(width * mlp_ratio), width))
        self.modulation = None
        if cond_dim is not None:
            self.modulation = nn.Sequential(nn.GELU(), nn.Linear(cond_dim, 6 * width))
            nn.init.zeros_(self.modulation[-1].weight)
            nn.init.zeros_(self.modulation[-1].bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, S, W); mask (S, S) bool, True = may not attend; cond (B, S, C) per-token condition."""
        return self.extend(x, None, mask, cond)[0]

    def extend(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor | None = None,
               cond: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """New tokens x (B, S, W) after the earlier tokens this block already saw, whose attention keys and values
        ``cache`` holds (each (B, heads, P, W / heads); None: no earlier tokens). Returns the new tokens' outputs
        and the keys and values to attend to from now on (P + S tokens): a causal rollout then computes each new
        frame once instead of the whole sequence again. ``mask`` (S, P + S) bool, True = may not attend."""
        if self.modulation is None:
            shift_a = scale_a = shift_m = scale_m = 0.0
            gate_a = gate_m = 1.0
        else:
            shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(cond).chunk(6, dim=-1)
        h = self.norm_attention(x) * (1 + scale_a) + shift_a
        attended, cache = self._attend(h, cache, mask)
        x = x + gate_a * attended
        h = self.norm_mlp(x) * (1 + scale_m) + shift_m
        return x + gate_m * self.mlp(h), cache

    def _attend(self, h: torch.Tensor, cache, mask: torch.Tensor | None):
        """Multi-head attention of h's tokens to the cached ones and each other, with ``self.attention``'s
        weights (nn.MultiheadAttention cannot take keys and values already projected); also the keys and
        values of all of them."""
        attention = self.attention
        batch, tokens, width = h.shape
        heads = attention.num_heads
        query, key, value = (part.view(batch, tokens, heads, width // heads).transpose(1, 2)
                             for part in nn.functional.linear(h, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1))
        if cache is not None:
            key, value = torch.cat([cache[0], key], dim=2), torch.cat([cache[1], value], dim=2)
        out = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=None if mask is None else ~mask,
            dropout_p=attention.dropout if self.training else 0.0)  # (B, heads, S, W / heads)
        return attention.out_proj(out.transpose(1, 2).reshape(batch, tokens, width)), (key, value)
