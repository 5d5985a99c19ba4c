"""Per-frame augmentation: each frame changed by its own draw, within the configured ranges, only while training."""

import pytest
import torch

from jepa_wm.augment import FrameAugmentation
from jepa_wm.errors import ConfigError


def video(frames: int = 6, seed: int = 0) -> torch.Tensor:
    """One window of identical frames (1, T, 32, 32, 3) with a non-repeating picture."""
    generator = torch.Generator().manual_seed(seed)
    picture = torch.randint(40, 216, (32, 32, 3), generator=generator, dtype=torch.uint8)
    return picture.expand(1, frames, 32, 32, 3).clone()


def draw(augmentation: FrameAugmentation, frames: torch.Tensor, seed: int = 1) -> torch.Tensor:
    return augmentation(frames, torch.Generator().manual_seed(seed))


def test_switched_off_it_returns_the_frames_untouched():
    frames = video()
    assert FrameAugmentation()(frames) is frames


def test_each_frame_gets_its_own_colour_change_within_the_range():
    frames, colour = video(), 0.3
    out = draw(FrameAugmentation(colour=colour), frames)
    assert out.shape == frames.shape and out.dtype == torch.uint8
    means = out[0].float().mean(dim=(1, 2))  # (T, 3): the same picture, so differences are the frames' draws
    assert len({tuple(m.round().tolist()) for m in means}) == frames.shape[1]
    ratio = means / frames[0].float().mean(dim=(1, 2))
    assert ((ratio > 1 - 1.5 * colour) & (ratio < 1 + 1.5 * colour)).all()
    assert torch.equal(out, draw(FrameAugmentation(colour=colour), frames))  # the same draw from the same seed


def test_a_shift_translates_each_frame_by_at_most_shift_pixels():
    frames, shift = video(frames=8), 3
    out = draw(FrameAugmentation(shift=shift), frames)
    picture, offsets = frames[0, 0], set()
    for frame in out[0]:
        matches = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)
                   if torch.equal(frame[shift:-shift, shift:-shift],
                                  picture[shift + dy:32 - shift + dy, shift + dx:32 - shift + dx])]
        assert len(matches) == 1, "every frame is the picture moved by one offset within the range"
        offsets.add(matches[0])
    assert len(offsets) > 1  # frames of one window move independently


def test_boxes_paint_rectangles_no_larger_than_box_size():
    frames = video(frames=10)
    out = draw(FrameAugmentation(boxes=1, box_size=0.25), frames)
    for frame in out[0]:
        changed = (frame != frames[0, 0]).any(dim=-1)
        rows, columns = changed.any(dim=1).nonzero(), changed.any(dim=0).nonzero()
        if len(rows):  # a box coloured like the picture under it can change nothing
            assert rows.max() - rows.min() + 1 <= 8 and columns.max() - columns.min() + 1 <= 8
            assert changed.sum() == (rows.max() - rows.min() + 1) * (columns.max() - columns.min() + 1)
    assert (out != frames).any(dim=-1).flatten(2).any(dim=-1).all()  # every frame got its box


@pytest.mark.parametrize("setting, message", [
    ({"colour": 1.5}, r"model.augment.colour must be in \[0, 1\)"),
    ({"shift": -1}, r"must be >= 0"),
    ({"box_size": 0.0}, r"model.augment.box_size must be in \(0, 1\]"),
])
def test_an_impossible_setting_is_refused(setting, message):
    with pytest.raises(ConfigError, match=message):
        FrameAugmentation.from_config(setting, "pixels")


def test_state_observations_refuse_image_augmentation_and_old_checkpoints_have_none():
    with pytest.raises(ConfigError, match="needs obs_type=pixels"):
        FrameAugmentation.from_config({"colour": 0.2}, "state")
    assert not FrameAugmentation.from_config(None, "state").active


def test_training_steps_see_augmented_frames_and_validation_sees_them_as_they_are(monkeypatch):
    from jepa_wm.config import model_config
    from jepa_wm.module import JEPAWorldModel

    cfg = model_config("model.augment.colour=0.3", "model.augment.boxes=1")
    module = JEPAWorldModel(cfg, (32, 32, 3), 2)
    seen = []
    monkeypatch.setattr(module, "compute_losses", lambda batch: seen.append(batch["obs"]) or (torch.zeros(()), {}))
    monkeypatch.setattr(module, "_stop_if_non_finite", lambda *args: None)
    monkeypatch.setattr(module, "_log_terms", lambda *args, **kwargs: None)
    window = cfg.history + cfg.rollout_steps
    batch = {"obs": video(frames=window), "actions": torch.zeros(1, window - 1, 2)}
    module.training_step(batch, 0)
    assert not torch.equal(seen[0], batch["obs"]) and seen[0].shape == batch["obs"].shape

    class Seen(Exception):
        pass

    def record_and_stop(batch):
        seen.append(batch["obs"])
        raise Seen

    monkeypatch.setattr(module, "compute_losses", record_and_stop)
    with pytest.raises(Seen):
        module.validation_step(batch, 0)
    assert seen[1] is batch["obs"]
    assert module.augmentation == FrameAugmentation(colour=0.3, boxes=1)
    assert not JEPAWorldModel(model_config(), (32, 32, 3), 2).augmentation.active  # off by default
