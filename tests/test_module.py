"""JEPAWorldModel: verbs, shapes, causality, losses, checkpoints."""

import pytest
import torch

from jepa_wm import CheckpointError, JEPAWorldModel, load_world_model
from jepa_wm.config import compose
from jepa_wm.errors import NonFiniteLossError
from planning.pipeline import train_from_config


def model_config(*overrides):
    return compose("train", ["data.path=unused", *overrides]).model


def small_pixel_model(*overrides, action_dim=2):
    cfg = model_config("model.encoder.channels=[8,16,16,16]", "model.encoder.embed_dim=16", *overrides)
    return JEPAWorldModel(cfg, (64, 64, 3), action_dim)


def fake_batch(batch=3, frames=5, action_dim=2):
    return {
        "obs": torch.randint(0, 256, (batch, frames, 64, 64, 3), dtype=torch.uint8),
        "actions": torch.rand(batch, frames - 1, action_dim) * 2 - 1,
        "physics": torch.randn(batch, frames, 4),
        "position": torch.randn(batch, frames, 2),
    }


@pytest.mark.parametrize("tokens", [False, True])
def test_encode_predict_rollout_shapes(tokens):
    model = small_pixel_model(f"model.encoder.tokens={tokens}")
    obs = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    z = model.encode(obs)
    tokens_per_frame = 16 if tokens else 1
    assert z.shape == (2, 3, tokens_per_frame, 16)
    assert model.predict(z, torch.zeros(2, 3, 2)).shape == (2, tokens_per_frame, 16)
    assert model.rollout(z[:, :1], torch.zeros(2, 7, 2)).shape == (2, 7, tokens_per_frame, 16)


def test_encode_rejects_wrong_observation_shape():
    model = small_pixel_model()
    with pytest.raises(ValueError, match=r"expects observations \(B, T, 64, 64, 3\)"):
        model.encode(torch.zeros(1, 1, 32, 32, 3, dtype=torch.uint8))


@pytest.mark.parametrize("predictor", ["mlp", "transformer"])
def test_rollout_never_sees_future_frames(predictor):
    model = small_pixel_model(f"model.predictor.name={predictor}", "model.predictor.hidden_dim=32",
                              "model.history=3").eval()
    with torch.no_grad():  # AdaLN-zero starts action-blind; random weights make every input matter
        for parameter in model.predictor.parameters():
            parameter.normal_(0, 0.2)
    z_history = torch.randn(2, 3, 1, 16)
    actions, past = torch.randn(2, 4, 2), torch.randn(2, 2, 2)
    changed = actions.clone()
    changed[:, 2:] += 5.0  # actions from step 3 on may change predictions from step 3 on only
    base = model.rollout(z_history, actions, past)
    moved = model.rollout(z_history, changed, past)
    assert torch.allclose(base[:, :2], moved[:, :2], atol=1e-6)
    assert not torch.allclose(base[:, 2:], moved[:, 2:])


def test_rollout_matches_repeated_predict_for_markov_model():
    model = small_pixel_model().eval()
    z = torch.randn(4, 1, 1, 16)
    actions = torch.randn(4, 3, 2)
    rolled = model.rollout(z, actions)
    step = z
    for k in range(3):
        step = model.predict(step, actions[:, k : k + 1])[:, None]
        assert torch.allclose(rolled[:, k], step[:, 0], atol=1e-6)


@pytest.mark.parametrize("overrides", [
    [],
    ["model.target=ema"],
    ["model.regularizers.sigreg=1.0", "model.regularizers.vicreg_variance=0", "model.regularizers.vicreg_covariance=0"],
    ["model.regularizers.temporal=0.1", "model.stop_gradient=true"],
    ["model.decoder.enabled=true", "model.decoder.detach=false"],
    ["model.predictor.name=transformer", "model.predictor.hidden_dim=32", "model.history=2"],
])
def test_every_loss_configuration_is_finite_and_differentiable(overrides):
    model = small_pixel_model(*overrides)
    loss, terms = model.compute_losses(fake_batch(frames=model.history + model.rollout_steps))
    assert torch.isfinite(loss)
    loss.backward()
    assert model.encoder.parameters().__next__().grad is not None
    assert terms["step_errors"].shape == (model.rollout_steps,)


def test_non_finite_loss_raises_a_clear_error():
    model = small_pixel_model()
    batch = fake_batch()
    batch["actions"][0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="lower model.optim.lr"):
        model.training_step(batch, 0)


def test_windows_of_the_wrong_length_are_rejected():
    with pytest.raises(ValueError, match="history \\+ rollout_steps = 5 frames"):
        small_pixel_model().compute_losses(fake_batch(frames=4))


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="model.target must be one of"):
        small_pixel_model("model.target=moving")


def test_checkpoint_roundtrip_gives_identical_outputs(tmp_path, reacher_pixel_dataset):
    cfg = compose("train", [
        f"data.path={reacher_pixel_dataset}", f"out={tmp_path / 'run'}", "trainer.max_steps=3",
        "trainer.val_check_interval=3", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
        "data.batch_size=4", "data.num_workers=0", "wandb.mode=disabled",
        "model.encoder.channels=[8,16,16,16]", "model.encoder.embed_dim=16",
    ])
    run = train_from_config(cfg)
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "config.yaml").is_file() and (run / "csv" / "metrics.csv").is_file()
    loaded = load_world_model(last)
    assert not loaded.training
    checkpoint = torch.load(last, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["action_dim"] == 2 * hparams["cfg"]["frameskip"]
    again = JEPAWorldModel(hparams["cfg"], hparams["obs_shape"], hparams["action_dim"])
    again.load_state_dict(checkpoint["state_dict"])
    obs = torch.randint(0, 256, (2, 2, 64, 64, 3), dtype=torch.uint8)
    assert torch.equal(loaded.encode(obs), again.eval().encode(obs))
    assert loaded.hparams["run_config"]["data"]["path"] == str(reacher_pixel_dataset)


def test_load_world_model_rejects_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_world_model(tmp_path / "nope.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match="not a jepa-wm world model"):
        load_world_model(foreign)
    model = small_pixel_model()
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, good)
    assert isinstance(load_world_model(good), JEPAWorldModel)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_world_model(truncated)


class _Payload:
    """An arbitrary class: unpickling it would run code chosen by whoever wrote the file."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_world_model_never_unpickles_code(tmp_path, capsys):
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"payload": _Payload()}, unsafe)
    with pytest.raises(CheckpointError, match="pickled code could run"):
        load_world_model(unsafe)
    assert "this must never run" not in capsys.readouterr().out


def test_load_world_model_accepts_a_wandb_artifact_reference(tmp_path, monkeypatch):
    import wandb

    artifact_dir = tmp_path / "artifact"
    artifact_dir.mkdir()
    model = small_pixel_model()
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, artifact_dir / "model.ckpt")
    requested = []

    class OfflineArtifact:
        def download(self):
            return str(artifact_dir)

    class OfflineApi:
        def artifact(self, name, type=None):
            requested.append((name, type))
            return OfflineArtifact()

    monkeypatch.setattr(wandb, "Api", OfflineApi)
    loaded = load_world_model("wandb:me/jepa-wm/model-abc:latest")
    assert requested == [("me/jepa-wm/model-abc:latest", "model")]
    obs = torch.randint(0, 256, (1, 1, 64, 64, 3), dtype=torch.uint8)
    assert torch.equal(loaded.encode(obs), model.eval().encode(obs))
