"""Action-conditioned predictors of the next frame's embedding.

All share one signature: ``forward(z (B, T, N, D), actions (B, T, A)) -> (B, T, N, D)`` where output
``[:, t]`` predicts ``z[:, t+1]`` from ``z[:, :t+1]`` and ``actions[:, :t+1]`` only (``actions[:, t]``
is the action taken at frame t). Both predict a residual: the change of the embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from jepa_wm.layers import AdaLNBlock, mlp
from jepa_wm.registry import Registry

# Predictors by model.predictor.name, each built from the model config (``from_config``).
PREDICTORS = Registry("predictor", "model.predictor.name")


@PREDICTORS.register("mlp")
class MLPPredictor(nn.Module):
    """The next embedding from the last ``context`` frames and their actions, stacked (a frame stack).

    ``context=1`` is Markov: one frame cannot show velocities, which a mass or a swinging pole keeps;
    two frames can. Frames before the first one are padded with copies of it (and its action).
    """

    @classmethod
    def from_config(cls, cfg, embed_dim: int, num_tokens: int, action_dim: int, max_frames: int, history: int):
        return cls(embed_dim, num_tokens, action_dim, cfg["hidden_dim"], cfg["depth"], context=history)

    def __init__(self, embed_dim: int, num_tokens: int, action_dim: int, hidden_dim: int = 512, depth: int = 2,
                 context: int = 1):
        super().__init__()
        if context < 1:
            raise ValueError(f"an MLP predictor needs a context of at least 1 frame; got {context}")
        self.context = context
        self.net = mlp(context * (num_tokens * embed_dim + action_dim), hidden_dim, num_tokens * embed_dim, depth)

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        frames = torch.cat([z.flatten(2), actions], dim=-1)  # (B, T, N*D + A)
        if self.context > 1:
            padded = torch.cat([frames[:, :1].expand(-1, self.context - 1, -1), frames], dim=1)  # (B, T+C-1, F)
            # (B, T, C*F), oldest first; contiguous, or the Linear below takes a path ~10x slower
            frames = padded.unfold(1, self.context, 1).transpose(2, 3).flatten(2).contiguous()
        delta = self.net(frames)  # (B, T, N*D)
        return z + delta.view_as(z)

    def predict_next(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Only the prediction after the last frame, (B, N, D), from z (B, T >= context, N, D): what a
        rollout needs, at 1 / context of ``forward``'s cost."""
        frames = torch.cat([z[:, -self.context:].flatten(2), actions[:, -self.context:]], dim=-1)  # (B, C, F)
        return z[:, -1] + self.net(frames.flatten(1)).view_as(z[:, -1])


@PREDICTORS.register("transformer")
class CausalTransformerPredictor(nn.Module):
    """Transformer over a history of frames, with a block-causal mask: frame t sees frames <= t only.

    ``action_conditioning="adaln"``: each frame's action modulates the norms of every block (AdaLN).
    ``"token"``: each frame gets one extra action token, attended to under the same causal rule.
    """

    @classmethod
    def from_config(cls, cfg, embed_dim: int, num_tokens: int, action_dim: int, max_frames: int, history: int):
        return cls(embed_dim, num_tokens, action_dim, max_frames, depth=cfg["depth"], heads=cfg["heads"],
                   hidden_dim=cfg["hidden_dim"], action_conditioning=cfg["action_conditioning"], dropout=cfg["dropout"])

    def __init__(self, embed_dim: int, num_tokens: int, action_dim: int, max_frames: int, depth: int = 4,
                 heads: int = 4, hidden_dim: int = 256, mlp_ratio: float = 4.0, action_conditioning: str = "adaln",
                 dropout: float = 0.0):
        super().__init__()
        if action_conditioning not in ("adaln", "token"):
            raise ValueError(f"action_conditioning must be 'adaln' or 'token'; got '{action_conditioning}'")
        if hidden_dim % heads:
            raise ValueError(f"predictor hidden_dim ({hidden_dim}) must be divisible by heads ({heads})")
        self.max_frames, self.num_tokens = max_frames, num_tokens
        self.conditioning = action_conditioning
        self.tokens_per_frame = num_tokens + (1 if action_conditioning == "token" else 0)
        self.embed = nn.Linear(embed_dim, hidden_dim)
        self.action_embed = nn.Sequential(nn.Linear(action_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim))
        self.frame_position = nn.Parameter(torch.zeros(1, max_frames, 1, hidden_dim))
        self.token_position = nn.Parameter(torch.zeros(1, 1, self.tokens_per_frame, hidden_dim))
        nn.init.trunc_normal_(self.frame_position, std=0.02)
        nn.init.trunc_normal_(self.token_position, std=0.02)
        cond_dim = hidden_dim if action_conditioning == "adaln" else None
        self.blocks = nn.ModuleList(AdaLNBlock(hidden_dim, heads, mlp_ratio, dropout, cond_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden_dim)
        self.out = nn.Linear(hidden_dim, embed_dim)

    def block_causal_mask(self, frames: int, device) -> torch.Tensor:
        """(S, S) bool, True where attention is forbidden: any token of a later frame."""
        frame_of_token = torch.arange(frames, device=device).repeat_interleave(self.tokens_per_frame)
        return frame_of_token[None, :] > frame_of_token[:, None]

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        batch, frames, tokens, _ = z.shape
        if frames > self.max_frames:
            raise ValueError(f"the transformer predictor was built for at most {self.max_frames} frames; got {frames}")
        x, cond = self._frame_tokens(z, actions, first_frame=0)
        mask = self.block_causal_mask(frames, z.device)
        for block in self.blocks:
            x = block(x, mask, cond)
        x = x.view(batch, frames, self.tokens_per_frame, -1)[:, :, :tokens]  # (B, T, N, W): observation tokens
        return z + self.out(self.norm(x))

    def rollout(self, z_history: torch.Tensor, past_actions: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Open-loop prediction of K frames, each frame's tokens computed once (every block caches the keys and
        values of the frames so far): z_history (B, H, N, D), past_actions (B, H-1, A), actions (B, K, A) -> (B, K, N, D).

        The same numbers as calling ``forward`` on the growing sequence and keeping its last frame, at a
        fraction of the cost (one frame per step instead of all of them); it needs every frame to fit,
        H + K - 1 <= max_frames, since dropping the oldest frame would move every frame's position.
        """
        batch, history, tokens, _ = z_history.shape
        steps = actions.shape[1]
        if history + steps - 1 > self.max_frames:
            raise ValueError(f"a cached rollout keeps every frame: {history} + {steps} - 1 frames exceed the "
                             f"{self.max_frames} this predictor was built for")
        x, cond = self._frame_tokens(z_history, torch.cat([past_actions, actions[:, :1]], dim=1), first_frame=0)
        mask = self.block_causal_mask(history, z_history.device)
        caches: list = [None] * len(self.blocks)  # per block: the keys and values of every frame so far
        last_z, predictions = z_history[:, -1], []
        for step in range(steps):
            for index, block in enumerate(self.blocks):
                x, caches[index] = block.extend(x, caches[index], mask, cond)
            x = x[:, -self.tokens_per_frame:][:, :tokens]  # (B, N, W): the newest frame's observation tokens
            last_z = last_z + self.out(self.norm(x))  # (B, N, D): the next frame
            predictions.append(last_z)
            if step + 1 < steps:  # the predicted frame, with the action taken at it, is the next input
                x, cond = self._frame_tokens(last_z[:, None], actions[:, step + 1 : step + 2], first_frame=history + step)
                mask = None  # a frame's tokens see every earlier frame and each other
        return torch.stack(predictions, dim=1)

    def _frame_tokens(self, z: torch.Tensor, actions: torch.Tensor, first_frame: int):
        """The tokens of frames first_frame.. (B, T*N', W) and their AdaLN conditions (B, T*N', W), or None."""
        frames = z.shape[1]
        action_tokens = self.action_embed(actions)  # (B, T, W)
        x = self.embed(z)  # (B, T, N, W)
        if self.conditioning == "token":
            x = torch.cat([x, action_tokens[:, :, None]], dim=2)  # (B, T, N+1, W)
        x = x + self.frame_position[:, first_frame : first_frame + frames] + self.token_position  # (B, T, N', W)
        cond = None
        if self.conditioning == "adaln":
            cond = action_tokens.repeat_interleave(self.tokens_per_frame, dim=1)  # (B, T*N', W)
        return x.flatten(1, 2), cond


def build_predictor(cfg, embed_dim: int, num_tokens: int, action_dim: int, max_frames: int, history: int = 1) -> nn.Module:
    """The predictor named by ``cfg.name`` (``mlp``: a stack of ``history`` frames, or ``transformer``: causal
    attention over up to ``max_frames``) with the config's sizes."""
    return PREDICTORS[cfg["name"]].from_config(cfg, embed_dim, num_tokens, action_dim, max_frames, history)
