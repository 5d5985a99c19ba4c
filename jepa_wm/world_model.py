"""The world model a planner uses: a plain ``nn.Module`` with its verbs, ``encode``, ``encode_target``, ``predict``
and ``rollout`` (and a learned planning cost when it has one). Training lives apart (``jepa_wm.module``).

Embeddings are always (B, T, N, D): batch, frames, tokens per frame (N=1 for pooled encoders), embedding size.
Observations are uint8 pixels (B, T, H, W, 3) in 0-255, or float states (B, T, S), as the env returns them;
a model action (A = frameskip x the env's action size) is ``frameskip`` env actions in [-1, 1], concatenated.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from jepa_wm.encoders import build_encoder
from jepa_wm.heads import head_families
from jepa_wm.predictors import build_predictor

TARGETS = ("online", "ema")


class WorldModel(nn.Module):
    """Encoder, action-conditioned predictor and (with ``target=ema``) the EMA target encoder.

    ``cfg`` is the ``model`` section of the training config (see ``configs/model/*.yaml``); ``hparams`` holds
    what a checkpoint records about it (the env its data came from, the run config). The target encoder is
    pinned to eval mode: it is a moving average, never trained, so its norms and dropout never switch to
    training behaviour whatever mode the model is put in.
    """

    def __init__(self, cfg: dict, obs_shape, action_dim: int, hparams: dict | None = None,
                 load_pretrained: bool = True):
        super().__init__()
        self.cfg = cfg
        self.hparams = dict(hparams or {})
        self.obs_shape = tuple(obs_shape)
        self.action_dim = int(action_dim)
        self.history = int(cfg["history"])
        self.rollout_steps = int(cfg["rollout_steps"])
        if self.history < 1 or self.rollout_steps < 1:
            raise ValueError(f"model.history and model.rollout_steps must be >= 1; got {self.history}, {self.rollout_steps}")
        if cfg["target"] not in TARGETS:
            raise ValueError(f"model.target must be one of {TARGETS}; got '{cfg['target']}'")
        # Teacher forcing feeds the whole window but its last frame: the longest context ever seen.
        self.max_context = self.history + self.rollout_steps - 1
        encoder_cfg = dict(cfg["encoder"])
        if not load_pretrained:  # a checkpoint holds the weights: no download, no local weights file
            encoder_cfg.update(pretrained=False, pretrained_file=None)
        self.encoder = build_encoder(encoder_cfg, cfg["obs_type"], self.obs_shape)
        self.embed_dim, self.num_tokens = self.encoder.embed_dim, self.encoder.num_tokens
        self.predictor = build_predictor(cfg["predictor"], self.embed_dim, self.num_tokens, self.action_dim,
                                         max_frames=self.max_context, history=self.history)
        if isinstance(getattr(self.predictor, "context", None), int):
            self.max_context = self.predictor.context  # a frame-stack MLP sees its last `context` frames only
        self.target_encoder = None
        if cfg["target"] == "ema":
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False).eval()
        for family in head_families():  # learned_cost, policy, ...: the heads its checkpoint carries (jepa_wm.heads)
            setattr(self, family.key, None)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def frameskip(self) -> int:
        return int(self.cfg["frameskip"])

    def train(self, mode: bool = True) -> "WorldModel":
        super().train(mode)
        if self.target_encoder is not None:
            self.target_encoder.eval()
        return self

    # --------------------------------------------------------------------------------- the verbs
    def encode(self, obs) -> torch.Tensor:
        """obs (B, T, *obs_shape) -> embeddings (B, T, N, D)."""
        return self._encode_with(self.encoder, self.checked_observations(obs))

    def encode_target(self, obs) -> torch.Tensor:
        """obs (B, T, *obs_shape) -> embeddings (B, T, N, D) in the space the predictor predicts into.

        That is the EMA target encoder's space when the model has one (``target=ema``), else the
        encoder's: planning compares predictions with a goal embedded here.
        """
        encoder = self.encoder if self.target_encoder is None else self.target_encoder
        return self._encode_with(encoder, self.checked_observations(obs))

    def predict(self, z_history: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Next embedding after the last frame: z_history (B, H, N, D), actions (B, H, A) -> (B, N, D).

        ``actions[:, t]`` is the action taken at frame t; the last one leads to the predicted frame.
        """
        self.check_actions(z_history, actions)
        context = min(z_history.shape[1], self.max_context)
        if hasattr(self.predictor, "predict_next") and context == self.max_context:
            return self.predictor.predict_next(z_history[:, -context:], actions[:, -context:])
        return self.predictor(z_history[:, -context:], actions[:, -context:])[:, -1]

    def rollout(self, z_history: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None = None) -> torch.Tensor:
        """Open-loop, autoregressive prediction of K future embeddings.

        z_history (B, H, N, D); actions (B, K, A), the future actions; past_actions (B, H-1, A), the
        actions between the history frames (zeros if None). Returns (B, K, N, D); step k only ever
        sees predicted, never true, future embeddings.
        """
        self.check_actions(z_history, actions)
        batch, frames = z_history.shape[:2]
        if past_actions is not None:
            self.check_actions(z_history, past_actions, "past_actions")
        if past_actions is None:
            past_actions = actions.new_zeros(batch, frames - 1, actions.shape[-1])
        if hasattr(self.predictor, "rollout") and frames + actions.shape[1] - 1 <= self.max_context:
            return self.predictor.rollout(z_history, past_actions, actions)  # each frame once (a causal cache)
        return self.rollout_whole_sequence(z_history, actions, past_actions)

    def rollout_whole_sequence(self, z_history: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor) -> torch.Tensor:
        """``rollout`` by calling the predictor on the whole (growing, then sliding) sequence at every step: what a
        predictor without a cached rollout needs, and the reference a cached one is measured against."""
        sequence, context_actions = z_history, past_actions  # (B, T, N, D), (B, T-1, A)
        predictions = []
        for step in range(actions.shape[1]):
            step_actions = torch.cat([context_actions, actions[:, step : step + 1]], dim=1)  # (B, T, A)
            next_z = self.predict(sequence, step_actions)  # (B, N, D)
            predictions.append(next_z)
            sequence = torch.cat([sequence, next_z[:, None]], dim=1)[:, -self.max_context :]
            context_actions = step_actions[:, step_actions.shape[1] - (sequence.shape[1] - 1) :]
        return torch.stack(predictions, dim=1)

    # ------------------------------------------------------------------------------------ checks
    def checked_observations(self, obs) -> torch.Tensor:
        """Observations as this model reads them, or a ``ValueError`` saying what was given and what is expected:
        pixels are uint8 (B, T, H, W, 3) in 0-255 (as the env returns them), states float (B, T, S)."""
        obs = torch.as_tensor(obs, device=self.device)
        if tuple(obs.shape[2:]) != self.obs_shape or obs.ndim != len(self.obs_shape) + 2:
            raise ValueError(
                f"this world model expects observations (B, T, {', '.join(map(str, self.obs_shape))}); "
                f"got {tuple(obs.shape)}"
            )
        if self.cfg["obs_type"] == "pixels" and obs.dtype != torch.uint8:
            low, high = (float(obs.min()), float(obs.max())) if obs.numel() else (0.0, 0.0)
            raise ValueError(f"pixel observations must be uint8 in 0-255, as the env returns them; got {obs.dtype} in "
                             f"[{low:.3g}, {high:.3g}] (images in [0, 1]: (x * 255).round().to(torch.uint8))")
        if self.cfg["obs_type"] == "state" and not torch.is_floating_point(obs):
            raise ValueError(f"state observations must be floating point; got {obs.dtype}")
        return obs

    def check_actions(self, z_history: torch.Tensor, actions: torch.Tensor, name: str = "actions") -> None:
        """Embeddings (B, H, N, D) and model actions (B, K, A): A is frameskip x the env's action size, in [-1, 1]."""
        expected = (self.num_tokens, self.embed_dim)
        if z_history.ndim != 4 or tuple(z_history.shape[2:]) != expected:
            raise ValueError(f"embeddings must be (B, H, {expected[0]}, {expected[1]}), as encode returns them; "
                             f"got {tuple(z_history.shape)}")
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim or actions.shape[0] != z_history.shape[0]:
            raise ValueError(f"{name} must be (B={z_history.shape[0]}, K, {self.action_dim}): each model action is "
                             f"{self.frameskip} env actions of size {self.action_dim // self.frameskip}, concatenated, "
                             f"in [-1, 1]; got {tuple(actions.shape)}")

    @staticmethod
    def _encode_with(encoder, obs: torch.Tensor) -> torch.Tensor:
        batch, frames = obs.shape[:2]
        z = encoder(obs.flatten(0, 1))  # (B*T, N, D)
        return z.unflatten(0, (batch, frames))  # (B, T, N, D)

    # -------------------------------------------------------------------------------- EMA target
    def update_target(self, momentum: float) -> None:
        """target <- m * target + (1 - m) * online (buffers copied), when there is an EMA target."""
        if self.target_encoder is None:
            return
        with torch.no_grad():
            for target, online in zip(self.target_encoder.parameters(), self.encoder.parameters()):
                target.lerp_(online, 1.0 - momentum)
            for target, online in zip(self.target_encoder.buffers(), self.encoder.buffers()):
                target.copy_(online)
