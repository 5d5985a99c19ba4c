"""Pixel decoder: only for the reconstruction ablation and for looking at what embeddings hold."""

import torch
from torch import nn


class PixelDecoder(nn.Module):
    """Flattened frame embedding (..., N*D) -> image (..., S, S, 3) in [0, 1], S a power of two >= 8.

    With ``decoder.detach`` (the default when enabled) gradients stop at the embedding, so the decoder
    only visualises; without it, reconstruction shapes the encoder: the baseline JEPA is compared to.
    """

    def __init__(self, input_dim: int, image_size: int, channels: int = 64):
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"PixelDecoder needs a power-of-two image size >= 8; got {image_size}")
        self.image_size = image_size
        self.project = nn.Linear(input_dim, channels * 4 * 4)
        layers = []
        size = 4
        while size < image_size:
            layers += [nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1), nn.GELU()]
            size *= 2
        layers.append(nn.Conv2d(channels, 3, 3, padding=1))
        self.upsample = nn.Sequential(*layers)
        self.channels = channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        leading = z.shape[:-1]
        x = self.project(z.reshape(-1, z.shape[-1])).view(-1, self.channels, 4, 4)  # (M, C, 4, 4)
        image = torch.sigmoid(self.upsample(x))  # (M, 3, S, S)
        return image.permute(0, 2, 3, 1).reshape(*leading, self.image_size, self.image_size, 3)
