"""Per-frame image augmentation while training on pixels.

Each frame of a training window gets its own random change (colour gains, a small translation, coloured boxes).
A change drawn independently for every frame cannot be predicted from the frames before it, so the prediction
loss teaches the encoder to leave it out of the embedding: invariance to colour, framing and clutter, the way a
scene varies when the camera, the lighting or the objects around a robot change. A change held fixed over a
window (a new scene per episode) teaches the opposite: the scene is the most predictable thing in it.
Validation, planning and the goal image see the frames as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from jepa_wm.errors import ConfigError


@dataclass(frozen=True)
class FrameAugmentation:
    colour: float = 0.0  # each channel x gain in [1 - colour, 1 + colour], plus an offset within +-colour/2 of full scale
    shift: int = 0  # translate by up to this many pixels each way (edge pixels repeated)
    boxes: int = 0  # coloured rectangles pasted at random places (synthetic clutter)
    box_size: float = 0.25  # a box's sides are at most this fraction of the image's

    @classmethod
    def from_config(cls, augment: dict | None, obs_type: str) -> "FrameAugmentation":
        """From the model config's ``augment`` section (absent in checkpoints that predate it: no augmentation)."""
        augmentation = cls(**(augment or {}))
        augmentation.check()
        if augmentation.active and obs_type != "pixels":
            raise ConfigError("model.augment changes images; it needs obs_type=pixels (set model.augment.* to 0)")
        return augmentation

    def check(self) -> None:
        if not 0.0 <= self.colour < 1.0:
            raise ConfigError(f"model.augment.colour must be in [0, 1); got {self.colour}")
        if self.shift < 0 or self.boxes < 0:
            raise ConfigError(f"model.augment.shift and model.augment.boxes must be >= 0; got {self.shift}, {self.boxes}")
        if not 0.0 < self.box_size <= 1.0:
            raise ConfigError(f"model.augment.box_size must be in (0, 1]; got {self.box_size}")

    @property
    def active(self) -> bool:
        return bool(self.colour or self.shift or self.boxes)

    def __call__(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 frames (..., H, W, 3) -> the same shape and dtype, each frame changed by its own random draw."""
        if not self.active:
            return frames
        shape = frames.shape
        images = frames.reshape(-1, *shape[-3:])  # (N, H, W, 3), uint8 until the colour change: a quarter of the memory
        if self.shift:
            images = self._shifted(images, generator)
        if self.boxes:
            images = self._with_boxes(images, generator)
        if self.colour:
            images = self._recoloured(images, generator)
        return images.reshape(shape)

    def _uniform(self, size, low: float, high: float, generator, device) -> torch.Tensor:
        return torch.rand(size, generator=generator, device=device) * (high - low) + low

    def _shifted(self, images: torch.Tensor, generator) -> torch.Tensor:
        count, height, width, _ = images.shape
        s = self.shift
        offsets = torch.randint(0, 2 * s + 1, (2, count, 1), generator=generator, device=images.device)
        rows = (torch.arange(height, device=images.device) + offsets[0]).clamp_(s, height + s - 1)  # (N, H)
        columns = (torch.arange(width, device=images.device) + offsets[1]).clamp_(s, width + s - 1)  # (N, W)
        rows, columns = rows - s, columns - s  # in the unpadded image: edge pixels repeat
        index = torch.arange(count, device=images.device)[:, None, None]
        return images[index, rows[:, :, None], columns[:, None, :]]

    def _recoloured(self, images: torch.Tensor, generator) -> torch.Tensor:
        count, device = images.shape[0], images.device
        gains = self._uniform((count, 1, 1, 3), 1 - self.colour, 1 + self.colour, generator, device)
        offsets = self._uniform((count, 1, 1, 1), -self.colour / 2, self.colour / 2, generator, device) * 255 + 0.5
        return images.float().mul_(gains).add_(offsets).clamp_(0, 255).to(images.dtype)  # + 0.5 then truncation: rounding

    def _with_boxes(self, images: torch.Tensor, generator) -> torch.Tensor:
        count, height, width, _ = images.shape
        device = images.device
        rows = torch.arange(height, device=device)[None, :]
        columns = torch.arange(width, device=device)[None, :]
        for _ in range(self.boxes):
            box_height = (self._uniform((count, 1), 0.1, 1.0, generator, device) * self.box_size * height).ceil()
            box_width = (self._uniform((count, 1), 0.1, 1.0, generator, device) * self.box_size * width).ceil()
            top = self._uniform((count, 1), 0.0, 1.0, generator, device) * (height - box_height)
            left = self._uniform((count, 1), 0.0, 1.0, generator, device) * (width - box_width)
            in_rows = (rows >= top) & (rows < top + box_height)  # (N, H)
            in_columns = (columns >= left) & (columns < left + box_width)  # (N, W)
            inside = in_rows[:, :, None] & in_columns[:, None, :]  # (N, H, W)
            colour = torch.randint(0, 256, (count, 1, 1, 3), generator=generator, device=device, dtype=images.dtype)
            images = torch.where(inside[..., None], colour, images)
        return images
