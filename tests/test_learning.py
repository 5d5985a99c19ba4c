"""Short real training runs: the world model learns, anti-collapse works, and planning beats random."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from jepa_wm.data.envs import make_env
from jepa_wm.planning.evaluate import evaluate
from jepa_wm.planning.experiment import build_controllers

from jepa_wm.config import compose, load_group, to_dict
from jepa_wm.metrics import embedding_std, linear_probe_r2
from jepa_wm.module import JEPAWorldModel
from jepa_wm.pipeline import (datamodule_from_config, embed_episodes, learned_cost_settings, learned_cost_trainer,
                              train_config)

pytestmark = pytest.mark.slow


def train(dataset, steps, *overrides, batch_size=32, learned_cost=False):
    """Train in-process for ``steps`` steps (with the task's own settings, as jepa-wm train does), then, with
    ``learned_cost``, the planning cost train.yaml asks for on the training episodes (as jepa-wm train does);
    returns the model (eval mode) and its data module."""
    cfg = train_config([f"data.path={dataset}", f"data.batch_size={batch_size}", "data.num_workers=0",
                        "data.val_fraction=0.2", *overrides])
    pl.seed_everything(0)
    datamodule = datamodule_from_config(cfg)
    datamodule.setup()
    model = JEPAWorldModel(cfg.model, datamodule.obs_shape, datamodule.action_dim, env=datamodule.describe())
    if steps:
        trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=0, gradient_clip_val=1.0)
        trainer.fit(model, datamodule=datamodule)
    model.eval()
    settings = learned_cost_settings(cfg) if learned_cost else None
    if settings is not None:
        episodes = embed_episodes(model.world_model, datamodule.episodes, datamodule.train_set.episode_ids)
        trainer, _, _ = learned_cost_trainer(model.world_model, datamodule.episodes, episodes, settings)
        trainer.train(settings.steps)
        model.world_model.learned_cost = trainer.result()
    return model, datamodule


def validation_metrics(model, datamodule):
    """Rollout error vs copy-last baseline, embedding std, and the position probe on validation windows."""
    errors, baselines, embeddings, positions = [], [], [], []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            _, terms = model.compute_losses(batch)
            errors.append(terms["step_errors"].mean())
            baselines.append(terms["copy_last_errors"].mean())
            embeddings.append(terms["embeddings"][:, 0].flatten(1))
            positions.append(batch["position"][:, 0])
    z, y = torch.cat(embeddings), torch.cat(positions)
    half = len(z) // 2
    return {
        "rollout_ratio": float(torch.stack(errors).mean() / torch.stack(baselines).mean()),
        "std": float(embedding_std(z)),
        "probe_r2": float(linear_probe_r2(z[:half], y[:half], z[half:], y[half:])),
    }


@pytest.fixture(scope="module")
def trained_world_model(reacher_learning_dataset):
    """The default pixel world model after 1500 steps with its learned cost: what the quickstart trains, on less
    data."""
    return train(reacher_learning_dataset, 1500, batch_size=64, learned_cost=True)


def test_short_training_learns_dynamics_and_the_state(trained_world_model):
    metrics = validation_metrics(*trained_world_model)
    assert metrics["rollout_ratio"] < 0.5, metrics  # far better than "nothing moves"
    assert metrics["probe_r2"] > 0.7, metrics  # the fingertip position is linearly readable


def success_of_ours_and_random(model, task: str, episodes: int = 12) -> tuple[float, float]:
    """Dev-episode success of MPC with ``model`` (planned as plan.py plans) and of random actions."""
    env = make_env({**to_dict(load_group("env", task)), "obs_type": model.cfg["obs_type"]})
    controllers, _ = build_controllers(compose("plan"), ["ours", "random"], model, env, "cpu")
    records = evaluate(env, controllers, episodes=episodes, seed=0, progress=False)
    return tuple(float(np.mean([r.success for r in records[method]])) for method in ("ours", "random"))


def test_small_trained_model_beats_random_at_reaching_goals(trained_world_model):
    ours, random = success_of_ours_and_random(trained_world_model[0], "reacher-easy")
    assert ours >= 0.5 and ours >= random + 0.3, (ours, random)


def test_point_mass_model_reaches_far_goals_despite_momentum(point_mass_learning_dataset):
    """With its task settings (temporal smoothing, the decoded cost), the planner reaches far goals."""
    model, datamodule = train(point_mass_learning_dataset, 1500, batch_size=64, learned_cost=True)
    assert model.cfg["regularizers"]["temporal"] > 0  # point_mass-easy's own training setting applied
    ours, random = success_of_ours_and_random(model, "point_mass-easy", episodes=20)
    # Measured with the temporal cost: ours 0.45, random 0.00; it now trains the decoded cost its env config asks for
    # (the suite-size model with 150 x 100 episodes plans 78% of the test episodes with it)
    assert ours >= 0.35 and ours >= random + 0.3, (ours, random)


# Collapse is measured scale-free: embedding std after 150 steps relative to the same model at step 0.
# Measured on this data: none 0.03, inverse dynamics alone 0.03, EMA 0.35, VICReg 2.1, SIGReg 3.5.
NO_REGULARIZERS = ["model.regularizers.vicreg_variance=0", "model.regularizers.vicreg_covariance=0",
                   "model.regularizers.inverse_dynamics=0"]
ANTI_COLLAPSE_MODES = {
    "vicreg": ["model.regularizers.inverse_dynamics=0"],
    "sigreg": [*NO_REGULARIZERS, "model.regularizers.sigreg=1.0"],
    "ema": [*NO_REGULARIZERS, "model.target=ema"],
}


def std_ratio_after_training(dataset, steps, *overrides):
    initial, datamodule = train(dataset, 0, *overrides)
    trained, _ = train(dataset, steps, *overrides)
    return validation_metrics(trained, datamodule)["std"] / validation_metrics(initial, datamodule)["std"]


def test_without_anti_collapse_embeddings_collapse(reacher_learning_dataset):
    assert std_ratio_after_training(reacher_learning_dataset, 150, *NO_REGULARIZERS) < 0.1


@pytest.mark.parametrize("mode", sorted(ANTI_COLLAPSE_MODES))
def test_each_anti_collapse_mode_keeps_embeddings_spread(reacher_learning_dataset, mode):
    assert std_ratio_after_training(reacher_learning_dataset, 150, *ANTI_COLLAPSE_MODES[mode]) > 0.25


def test_inverse_dynamics_alone_does_not_prevent_collapse(reacher_learning_dataset):
    """It keeps action-relevant information but lets the scale shrink: pair it with VICReg or SIGReg."""
    only_inverse_dynamics = [*NO_REGULARIZERS, "model.regularizers.inverse_dynamics=1.0"]
    assert std_ratio_after_training(reacher_learning_dataset, 150, *only_inverse_dynamics) < 0.1


def test_frozen_pretrained_encoder_cannot_collapse(reacher_learning_dataset, tmp_path):
    import timm

    weights = tmp_path / "vit.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=0).state_dict(), weights)
    encoder = ["model.encoder.name=timm", "model.encoder.pretrained=true", "model.encoder.frozen=true",
               f"model.encoder.pretrained_file={weights}"]
    untrained, _ = train(reacher_learning_dataset, 0, *NO_REGULARIZERS, *encoder)
    assert not any(p.requires_grad for p in untrained.encoder.parameters())
    assert std_ratio_after_training(reacher_learning_dataset, 100, *NO_REGULARIZERS, *encoder) == pytest.approx(1.0)


def colour_sensitivity(model, datamodule) -> float:
    """How far a global colour change moves an embedding, relative to how far apart two poses are: mean squared
    distance between each validation frame's embedding and its recoloured copy's, over the mean squared distance
    between embeddings of different frames."""
    frames = torch.cat([batch["obs"][:, 0] for batch in datamodule.val_dataloader()])  # (N, H, W, 3) uint8
    gains, offset = torch.tensor([0.8, 1.15, 0.9]), 12.0
    recoloured = (frames.float() * gains + offset).clamp(0, 255).round().to(torch.uint8)
    with torch.no_grad():
        z = model.encode(frames[:, None]).flatten(1)
        z_recoloured = model.encode(recoloured[:, None]).flatten(1)
    between_poses = (z[:, None] - z[None]).pow(2).sum(-1).sum() / (len(z) * (len(z) - 1))
    return float((z - z_recoloured).pow(2).sum(-1).mean() / between_poses)


def test_per_frame_colour_augmentation_teaches_colour_invariance_and_keeps_the_state(reacher_learning_dataset):
    """A colour change drawn anew for every frame cannot be predicted, so training leaves it out of the embedding;
    without it, a recoloured frame lands far from its own pose."""
    plain, datamodule = train(reacher_learning_dataset, 400)
    augmented, _ = train(reacher_learning_dataset, 400, "model.augment.colour=0.3")
    assert colour_sensitivity(augmented, datamodule) < 0.5 * colour_sensitivity(plain, datamodule)
    assert validation_metrics(augmented, datamodule)["probe_r2"] > 0.6  # the arm is still in the embedding
