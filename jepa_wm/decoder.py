"""Pixel decoder: only for the reconstruction ablation and for looking at what embeddings hold."""

import torch
from torch import nn


class PixelDecoder(nn.Module):
    """Flattened frame embedding (..., N*D) -> image (..., S, S, 3) in [0, 1], S a power of two >= 8.

    A mirror of the conv encoder: ``channels`` wide at 4x4, halved (down to 16) at every doubling of
    the resolution, the last transposed convolution writing the 3 colour channels. Its cost per frame
    is then about the encoder's, so a reconstruction model trains at about the JEPA's speed; a decoder
    as wide at 64x64 as at 4x4 would spend ~15x the encoder's compute on the last layers alone.

    With ``decoder.detach`` (the default when enabled) gradients stop at the embedding, so the decoder
    only visualises; without it, reconstruction shapes the encoder: the baseline JEPA is compared to.
    """

    def __init__(self, input_dim: int, image_size: int, channels: int = 128):
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"PixelDecoder needs a power-of-two image size >= 8; got {image_size}")
        self.image_size, self.channels = image_size, channels
        self.project = nn.Linear(input_dim, channels * 4 * 4)
        layers, width, size = [], channels, 4
        while size * 2 < image_size:
            narrower = max(16, width // 2)
            layers += [nn.ConvTranspose2d(width, narrower, 4, stride=2, padding=1), nn.GELU()]
            width, size = narrower, size * 2
        layers.append(nn.ConvTranspose2d(width, 3, 4, stride=2, padding=1))
        self.upsample = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        leading = z.shape[:-1]
        x = self.project(z.reshape(-1, z.shape[-1])).view(-1, self.channels, 4, 4)  # (M, C, 4, 4)
        image = torch.sigmoid(self.upsample(x))  # (M, 3, S, S)
        return image.permute(0, 2, 3, 1).reshape(*leading, self.image_size, self.image_size, 3)
