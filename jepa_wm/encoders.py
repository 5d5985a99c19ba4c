"""Observation encoders. Each maps observations (B, *obs_shape) to embeddings (B, N, D) and exposes
``embed_dim`` (D) and ``num_tokens`` (N; 1 for pooled encoders)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jepa_wm.layers import mlp
from jepa_wm.registry import Registry

# Encoders by model.encoder.name. Each class says which observation it reads (``observation``) and builds
# itself from the ``model.encoder`` section (``from_config(cfg, obs_shape)``).
ENCODERS = Registry("encoder", "model.encoder.name")


@ENCODERS.register("conv")
class ConvEncoder(nn.Module):
    """Strided conv net trained from scratch on (B, S, S, 3) uint8 frames, channels last.

    Pooled: the final feature map flattened to one embedding. Tokens: one embedding per cell of the
    final feature map (S / 2^stages per side), for predictors that attend over space.
    """

    observation = "pixels"

    @classmethod
    def from_config(cls, cfg, obs_shape) -> "ConvEncoder":
        return cls(obs_shape[0], cfg["embed_dim"], tuple(cfg["channels"]), cfg["tokens"])

    def __init__(self, image_size: int, embed_dim: int, channels=(32, 64, 128, 256), tokens: bool = False):
        super().__init__()
        self.image_size, self.embed_dim, self.tokens = image_size, embed_dim, tokens
        layers, previous = [], 3
        for width in channels:
            layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1), nn.GroupNorm(min(8, width), width), nn.GELU()]
            previous = width
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(channels)
        if side < 1:
            raise ValueError(f"{len(channels)} stride-2 stages shrink a {image_size}px image to nothing; use fewer channels")
        self.num_tokens = side * side if tokens else 1
        self.head = nn.Linear(previous, embed_dim) if tokens else nn.Linear(previous * side * side, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        expected = (self.image_size, self.image_size, 3)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(f"ConvEncoder expects images (B, {', '.join(map(str, expected))}); got {tuple(images.shape)}")
        x = images.float().permute(0, 3, 1, 2) / 255.0 - 0.5  # (B, 3, S, S) centred
        features = self.features(x)  # (B, C, s, s)
        if self.tokens:
            return self.head(features.flatten(2).transpose(1, 2))  # (B, s*s, D)
        return self.head(features.flatten(1))[:, None]  # (B, 1, D)


@ENCODERS.register("timm")
class TimmEncoder(nn.Module):
    """Any timm backbone by name, e.g. ``vit_small_patch14_dinov2.lvd142m`` as in DINO-WM.

    ``pretrained`` loads the model's published weights through timm (from ``pretrained_file`` when
    given, so weights need no download). ``frozen`` freezes the backbone and adds no trainable
    projection: a frozen encoder cannot collapse, which is its anti-collapse mechanism.
    """

    observation = "pixels"

    @classmethod
    def from_config(cls, cfg, obs_shape) -> "TimmEncoder":
        return cls(cfg["timm_model"], cfg["embed_dim"], cfg["pretrained"], cfg["frozen"], cfg["tokens"],
                   cfg["image_size"] or obs_shape[0], cfg["pretrained_file"])

    def __init__(self, model_name: str, embed_dim: int | None, pretrained: bool = False, frozen: bool = False,
                 tokens: bool = False, image_size: int = 64, pretrained_file: str | None = None):
        super().__init__()
        import timm

        kwargs = {"pretrained": pretrained, "num_classes": 0}
        if pretrained_file:
            kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained_file)}
        try:
            self.backbone = timm.create_model(model_name, img_size=image_size, **kwargs)
            self.input_size = image_size
        except TypeError:  # convolutional backbones take any size and no img_size argument
            self.backbone = timm.create_model(model_name, **kwargs)
            self.input_size = image_size
        except RuntimeError as error:
            raise ValueError(f"timm could not build '{model_name}': {error}") from error
        config = self.backbone.pretrained_cfg
        self.register_buffer("mean", torch.tensor(config.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1), persistent=False)
        self.tokens, self.frozen = tokens, frozen
        width = self.backbone.num_features
        if frozen:
            self.backbone.requires_grad_(False).eval()
        self.project = nn.Identity() if frozen or embed_dim in (None, width) else nn.Linear(width, embed_dim)
        self.embed_dim = width if isinstance(self.project, nn.Identity) else embed_dim
        with torch.no_grad():
            self.num_tokens = self._backbone_tokens(torch.zeros(1, 3, self.input_size, self.input_size)).shape[1]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # frozen statistics (dropout, norms) whatever the module's mode
        return self

    def _backbone_tokens(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(x)
        if not self.tokens:
            return self.backbone.forward_head(features, pre_logits=True)[:, None]  # (B, 1, C)
        if features.ndim == 4:  # CNN feature map (B, C, h, w)
            return features.flatten(2).transpose(1, 2)
        return features[:, getattr(self.backbone, "num_prefix_tokens", 0):]  # patch tokens (B, N, C)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"TimmEncoder expects images (B, H, W, 3); got {tuple(images.shape)}")
        x = images.float().permute(0, 3, 1, 2) / 255.0  # (B, 3, H, W)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        if self.frozen:
            with torch.no_grad():
                return self._backbone_tokens(x)
        return self.project(self._backbone_tokens(x))  # (B, N, D)


@ENCODERS.register("mlp")
class MLPEncoder(nn.Module):
    """Low-dimensional state vectors (B, S) -> one embedding (B, 1, D)."""

    observation = "state"

    @classmethod
    def from_config(cls, cfg, obs_shape) -> "MLPEncoder":
        return cls(obs_shape[0], cfg["embed_dim"], cfg["hidden_dim"], cfg["depth"])

    def __init__(self, state_dim: int, embed_dim: int, hidden_dim: int = 256, depth: int = 2):
        super().__init__()
        self.state_dim, self.embed_dim, self.num_tokens = state_dim, embed_dim, 1
        self.net = mlp(state_dim, hidden_dim, embed_dim, depth)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if states.ndim != 2 or states.shape[1] != self.state_dim:
            raise ValueError(f"MLPEncoder expects states (B, {self.state_dim}); got {tuple(states.shape)}")
        return self.net(states.float())[:, None]


def build_encoder(cfg, obs_type: str, obs_shape: tuple) -> nn.Module:
    """The encoder named by ``cfg.name`` for observations of ``obs_type`` and ``obs_shape``."""
    encoder = ENCODERS[cfg["name"]]
    if obs_type != encoder.observation:
        readers = [name for name, other in ENCODERS.items() if other.observation == obs_type]
        raise ValueError(f"encoder '{cfg['name']}' reads {encoder.observation} observations, but model.obs_type is "
                         f"'{obs_type}' (encoders for {obs_type}: {', '.join(readers)})")
    return encoder.from_config(cfg, obs_shape)
