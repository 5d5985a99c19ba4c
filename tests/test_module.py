"""JEPAWorldModel: verbs, shapes, causality, losses, checkpoints."""

import pytest
import torch
import torch.nn.functional as F

from jepa_wm import CheckpointError, JEPAWorldModel, WorldModel, load_world_model
from jepa_wm.config import compose, model_config
from jepa_wm.errors import NonFiniteLossError
from jepa_wm.pipeline import train_from_config


def small_pixel_model(*overrides, action_dim=2):
    cfg = model_config("model.encoder.channels=[8,16,16,16]", "model.encoder.embed_dim=16", *overrides)
    return JEPAWorldModel(cfg, (64, 64, 3), action_dim)


def fake_batch(batch=3, frames=7, action_dim=2):  # the default model's window: history 2 + rollout 5
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


def test_transformer_rollout_predicts_each_frame_once_and_as_the_whole_sequence_would():
    model = small_pixel_model("model.predictor.name=transformer", "model.predictor.hidden_dim=32", "model.history=2",
                              "model.encoder.tokens=true").world_model.eval()
    with torch.no_grad():
        for parameter in model.predictor.parameters():
            parameter.normal_(0, 0.2)
    z_history, past = torch.randn(3, 2, model.num_tokens, model.embed_dim), torch.randn(3, 1, 2)
    calls = []
    model.predictor.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[1]))
    for steps in (model.max_context - 1, model.max_context):  # every frame fits; then the oldest must slide out
        actions = torch.randn(3, steps, 2)
        calls.clear()
        rolled = model.rollout(z_history, actions, past)
        assert calls == ([] if steps < model.max_context else [2, 3, 4, 5, 6, 6])  # cached: no whole-sequence call
        calls.clear()
        assert torch.allclose(rolled, model.rollout_whole_sequence(z_history, actions, past), atol=1e-5)


def test_rollout_matches_repeated_predict_for_markov_model():
    model = small_pixel_model("model.history=1").eval()
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
    with pytest.raises(NonFiniteLossError, match=r"data hold NaN or inf values \(actions\)"):
        model.training_step(batch, 0)


def test_windows_of_the_wrong_length_are_rejected():
    with pytest.raises(ValueError, match="history \\+ rollout_steps = 7 frames"):
        small_pixel_model().compute_losses(fake_batch(frames=4))


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="model.target must be one of"):
        small_pixel_model("model.target=moving")


def test_checkpoint_roundtrip_gives_identical_outputs(tmp_path, reacher_pixel_dataset):
    cfg = compose("train", [
        f"data.path={reacher_pixel_dataset}", f"out={tmp_path / 'run'}", "trainer.max_steps=3",
        "trainer.val_check_interval=3", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
        "data.batch_size=4", "data.num_workers=0", "wandb.mode=disabled", "learned_cost=none",
        "model.encoder.channels=[8,16,16,16]", "model.encoder.embed_dim=16",
        "best.metric=val/rollout_error_ratio", "best.mode=min",  # a few validation frames may rank no distances
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
    assert isinstance(load_world_model(good), WorldModel)
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


def test_stop_gradient_targets_receive_no_gradient_through_the_prediction_loss():
    model = small_pixel_model("model.stop_gradient=true", "model.regularizers.vicreg_variance=0",
                              "model.regularizers.vicreg_covariance=0", "model.regularizers.inverse_dynamics=0",
                              "model.loss.rollout=0")
    batch = fake_batch()
    loss, _ = model.compute_losses(batch)
    with torch.no_grad():
        z = model.encode(batch["obs"])
    # With stop-gradient the loss depends on the encoder only through the predictor's inputs z[:, :-1]:
    # the gradient equals that of the same loss with the targets replaced by constants.
    prediction = model.predictor(model.encode(batch["obs"])[:, :-1], batch["actions"])
    reference = torch.nn.functional.mse_loss(prediction, z[:, 1:])
    grads = torch.autograd.grad(loss, list(model.encoder.parameters()))
    reference_grads = torch.autograd.grad(reference, list(model.encoder.parameters()))
    for grad, expected in zip(grads, reference_grads):
        assert torch.allclose(grad, expected, atol=1e-6)
    unstopped = small_pixel_model("model.regularizers.vicreg_variance=0", "model.regularizers.vicreg_covariance=0",
                                  "model.regularizers.inverse_dynamics=0", "model.loss.rollout=0")
    unstopped.load_state_dict(model.state_dict())
    other = torch.autograd.grad(unstopped.compute_losses(batch)[0], list(unstopped.encoder.parameters()))
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(other, reference_grads))


def test_ema_target_moves_toward_the_online_encoder_and_receives_no_gradient():
    model = small_pixel_model("model.target=ema", "model.ema_momentum=0.75")
    before = [p.detach().clone() for p in model.target_encoder.parameters()]
    with torch.no_grad():
        for parameter in model.encoder.parameters():
            parameter.add_(1.0)
    loss, _ = model.compute_losses(fake_batch())
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.target_encoder.parameters())
    model.update_target_encoder()
    for old, target, online in zip(before, model.target_encoder.parameters(), model.encoder.parameters()):
        assert torch.allclose(target, 0.75 * old + 0.25 * online)


def test_ema_updates_once_per_optimizer_step_with_gradient_accumulation(tmp_path, reacher_pixel_dataset):
    import pytorch_lightning as pl

    from jepa_wm.pipeline import datamodule_from_config

    cfg = compose("train", [f"data.path={reacher_pixel_dataset}", "data.batch_size=1", "data.num_workers=0",
                            "model.target=ema", "model.encoder.channels=[8,8,8,8]", "model.encoder.embed_dim=8"])
    datamodule = datamodule_from_config(cfg)
    datamodule.setup()
    model = JEPAWorldModel(cfg.model, datamodule.obs_shape, datamodule.action_dim, env=datamodule.describe())
    updates = []
    original = model.update_target_encoder
    model.update_target_encoder = lambda: (updates.append(1), original())[1]
    trainer = pl.Trainer(max_steps=3, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 3 and len(updates) == 3  # 6 training batches, 3 optimizer steps


def test_rollout_loss_never_reads_the_true_future_frames():
    model = small_pixel_model("model.history=2", "model.predictor.name=transformer", "model.predictor.hidden_dim=32")
    with torch.no_grad():
        for parameter in model.predictor.parameters():
            parameter.normal_(0, 0.2)
    batch = fake_batch(frames=model.history + model.rollout_steps)
    _, terms = model.compute_losses(batch)
    changed = {**batch, "obs": batch["obs"].clone()}
    changed["obs"][:, model.history:] = 255 - changed["obs"][:, model.history:]  # other future frames
    captured = {}
    real_rollout = model.rollout
    model.rollout = lambda *args: captured.setdefault("rolled", real_rollout(*args))
    model.compute_losses(changed)
    model.rollout = real_rollout
    with torch.no_grad():
        z = model.encode(batch["obs"])
        expected = model.rollout(z[:, :model.history], batch["actions"][:, model.history - 1:],
                                 batch["actions"][:, : model.history - 1])
    assert torch.allclose(captured["rolled"], expected, atol=1e-5)  # same predictions from other futures
    assert not torch.allclose(model.compute_losses(changed)[1]["rollout"], terms["rollout"])  # targets did change


def test_token_embeddings_cannot_meet_vicreg_with_per_position_constants():
    from jepa_wm.metrics import effective_rank
    from jepa_wm.regularizers import token_groups, vicreg_variance

    # Constant across samples, different per token position: pooled over positions it looks spread.
    per_position = torch.randn(16, 8) * 3  # (N, D)
    z = per_position.expand(32, 4, 16, 8)  # (B, T, N, D)
    assert vicreg_variance(z.flatten(0, 2)) < 0.1  # the pooled statistic is fooled
    assert vicreg_variance(token_groups(z)) == pytest.approx(1.0, abs=0.02)  # per position: fully collapsed
    assert float(effective_rank(token_groups(z))) < 1.5
    spread = torch.randn(32, 4, 16, 8)
    assert vicreg_variance(token_groups(spread)) < 0.1 and float(effective_rank(token_groups(spread))) > 6
    from jepa_wm.regularizers import REGULARIZERS

    model = small_pixel_model("model.encoder.tokens=true")  # what training computes, term by term
    actions = torch.zeros(32, 3, model.action_dim)
    assert REGULARIZERS["vicreg_variance"].compute(model, z, z, actions) == pytest.approx(1.0, abs=0.02)
    assert REGULARIZERS["sigreg"].compute(model, z, z, actions) > 10 * REGULARIZERS["sigreg"].compute(model, spread, spread, actions)


def test_a_reconstruction_world_model_trains_its_encoder_by_reconstruction_alone():
    overrides = ["model.prediction_trains_encoder=false", "model.regularizers.vicreg_variance=0",
                 "model.regularizers.vicreg_covariance=0", "model.regularizers.inverse_dynamics=0"]
    without_decoder = small_pixel_model(*overrides)
    loss, _ = without_decoder.compute_losses(fake_batch())
    loss.backward()  # prediction alone: the predictor learns, the encoder gets nothing
    assert all(p.grad is None or not p.grad.any() for p in without_decoder.encoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in without_decoder.predictor.parameters())
    with_decoder = small_pixel_model(*overrides, "model.decoder.enabled=true", "model.decoder.detach=false")
    with_decoder.compute_losses(fake_batch())[0].backward()
    assert any(p.grad is not None and p.grad.any() for p in with_decoder.encoder.parameters())


def test_the_verbs_refuse_inputs_of_the_wrong_kind_with_what_they_expect():
    model = small_pixel_model(action_dim=10).eval()  # frameskip 5 x 2 env actions
    images = torch.rand(1, 1, 64, 64, 3)  # floats in [0, 1]: would be divided by 255 again
    with pytest.raises(ValueError, match=r"pixel observations must be uint8 in 0-255.*got torch.float32 in \[.*, 1\]"):
        model.encode(images)
    z = model.encode((images * 255).round().to(torch.uint8))
    with pytest.raises(ValueError, match=r"actions must be \(B=1, K, 10\): each model action is 5 env actions of size 2"):
        model.rollout(z, torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match=r"embeddings must be \(B, H, 1, 16\)"):
        model.predict(z[0], torch.zeros(1, 1, 10))


def test_the_ema_target_encoder_stays_in_eval_mode_while_the_model_trains():
    model = small_pixel_model("model.target=ema", "model.encoder.name=timm", "model.encoder.timm_model=vit_tiny_patch16_224",
                              "model.encoder.embed_dim=16")
    model.train()
    assert model.training and model.encoder.training
    assert not model.target_encoder.training and not any(module.training for module in model.target_encoder.modules())


def test_with_an_ema_target_the_predictor_is_trained_toward_the_target_encoders_embeddings():
    """model.target=ema takes effect in the loss: the teacher-forcing targets are the EMA encoder's, not the online's."""
    model = small_pixel_model("model.target=ema", "model.regularizers.vicreg_variance=0",
                              "model.regularizers.vicreg_covariance=0", "model.regularizers.inverse_dynamics=0")
    with torch.no_grad():
        for parameter in model.encoder.parameters():  # the online encoder moves away from its EMA copy
            parameter.add_(0.5 * torch.randn_like(parameter))
    batch = fake_batch()
    _, terms = model.compute_losses(batch)
    with torch.no_grad():
        z, target = model.encode(batch["obs"]), model.world_model.encode_target(batch["obs"])
        predicted = model.predictor(z[:, :-1], batch["actions"])
    assert not torch.allclose(z, target)
    assert float(terms["teacher_forcing"]) == pytest.approx(float(F.mse_loss(predicted, target[:, 1:])), rel=1e-5)
    assert float(terms["teacher_forcing"]) != pytest.approx(float(F.mse_loss(predicted, z[:, 1:])), rel=1e-3)


@pytest.mark.parametrize("detach", [True, False])
def test_decoder_detach_decides_whether_reconstruction_shapes_the_encoder(detach):
    model = small_pixel_model("model.decoder.enabled=true", f"model.decoder.detach={str(detach).lower()}")
    _, terms = model.compute_losses(fake_batch())
    terms["reconstruction"].backward()  # the reconstruction term alone
    encoder_moved = any(p.grad is not None and p.grad.any() for p in model.encoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.decoder.parameters())
    assert encoder_moved == (not detach)


def test_the_coordinates_loss_decodes_the_success_coordinates_from_encodings_and_from_open_loop_predictions():
    from jepa_wm.config import load_group, to_dict

    env = {"config": to_dict(load_group("env", "reacher-easy"))}  # success: the fingertip's x-y (no angles)
    cfg = model_config("model.encoder.channels=[8,16,16,16]", "model.encoder.embed_dim=16", "model.loss.coordinates=1.0")
    model = JEPAWorldModel(cfg, (64, 64, 3), 10, env=env)
    batch = fake_batch(action_dim=10)
    _, terms = model.compute_losses(batch)
    with torch.no_grad():
        z = model.encode(batch["obs"])
        rolled = model.rollout(z[:, :2], batch["actions"][:, 1:], batch["actions"][:, :1])
        expected = (F.mse_loss(model.coordinate_head(z.flatten(2)), batch["position"])
                    + F.mse_loss(model.coordinate_head(rolled.flatten(2)), batch["position"][:, 2:]))
    assert float(terms["coordinates"]) == pytest.approx(float(expected), rel=1e-5)
    # the predictor learns from it: the term's gradient reaches the predictor's weights
    model.zero_grad()
    terms["coordinates"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.predictor.parameters())
    finger = JEPAWorldModel(cfg, (64, 64, 3), 4, env={"config": to_dict(load_group("env", "finger-spin"))})
    assert finger.coordinate_head[-1].out_features == 6  # three hinges, each as the sin and cos of its turn
    assert small_pixel_model().coordinate_head is None  # off by default
    with pytest.raises(ValueError, match="model.loss.coordinates decodes the task's success coordinates"):
        JEPAWorldModel(cfg, (64, 64, 3), 10)
