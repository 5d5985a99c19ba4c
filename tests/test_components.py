"""Encoders, predictors, anti-collapse terms and metrics: shapes, masks and math."""

import pytest
import torch

from jepa_wm.encoders import ConvEncoder, TimmEncoder, build_encoder
from jepa_wm.metrics import effective_rank, embedding_std, linear_probe_r2
from jepa_wm.predictors import CausalTransformerPredictor, MLPPredictor
from jepa_wm.regularizers import InverseDynamicsHead, sigreg, temporal_smoothness, vicreg_covariance, vicreg_variance


def randomize(module):
    """Random weights everywhere (AdaLN-zero starts action-blind by design)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.2)
    return module.eval()


PREDICTORS = {
    "mlp": lambda tokens: MLPPredictor(8, tokens, 3, hidden_dim=32),
    "mlp-frame-stack": lambda tokens: MLPPredictor(8, tokens, 3, hidden_dim=32, context=3),
    "transformer-adaln": lambda tokens: CausalTransformerPredictor(8, tokens, 3, max_frames=6, depth=2, heads=2, hidden_dim=16),
    "transformer-token": lambda tokens: CausalTransformerPredictor(8, tokens, 3, max_frames=6, depth=2, heads=2,
                                                                   hidden_dim=16, action_conditioning="token"),
}


@pytest.mark.parametrize("name", sorted(PREDICTORS))
@pytest.mark.parametrize("tokens", [1, 4])
def test_predictions_never_depend_on_future_frames_or_actions(name, tokens):
    predictor = randomize(PREDICTORS[name](tokens))
    z, actions = torch.randn(2, 6, tokens, 8), torch.randn(2, 6, 3)
    output = predictor(z, actions)
    assert output.shape == z.shape
    for t in range(5):
        future_z, future_actions = z.clone(), actions.clone()
        future_z[:, t + 1 :] += 3.0
        future_actions[:, t + 1 :] -= 3.0
        changed = predictor(future_z, future_actions)
        assert torch.allclose(changed[:, : t + 1], output[:, : t + 1], atol=1e-5), (name, t)
    moved = actions.clone()
    moved[:, 2] += 1.0
    assert not torch.allclose(predictor(z, moved)[:, 2], output[:, 2])  # the action at t does matter


@pytest.mark.parametrize("name", ["transformer-adaln", "transformer-token"])
@pytest.mark.parametrize("history", [1, 2])
def test_transformer_rollout_computes_each_frame_once_and_predicts_what_the_whole_sequence_does(name, history):
    """The cached rollout (each new frame through the blocks once) against forward on the growing sequence."""
    predictor = randomize(PREDICTORS[name](4))
    z_history, past, future = torch.randn(3, history, 4, 8), torch.randn(3, history - 1, 3), torch.randn(3, 7 - history, 3)
    sequence, actions, expected = z_history, past, []
    for step in range(future.shape[1]):
        actions = torch.cat([actions, future[:, step : step + 1]], dim=1)
        expected.append(predictor(sequence, actions)[:, -1])
        sequence = torch.cat([sequence, expected[-1][:, None]], dim=1)
    assert torch.allclose(predictor.rollout(z_history, past, future), torch.stack(expected, dim=1), atol=1e-5)
    with pytest.raises(ValueError, match="exceed the 6 this predictor was built for"):
        predictor.rollout(z_history, past, torch.randn(3, 8 - history, 3))


@pytest.mark.parametrize("conditioned", [False, True])
def test_a_transformer_block_attends_as_torchs_multihead_attention_does(conditioned):
    """The block projects keys and values itself (to cache them); its weights keep their meaning in checkpoints."""
    from jepa_wm.layers import AdaLNBlock

    block = randomize(AdaLNBlock(16, 4, cond_dim=8 if conditioned else None))
    x, cond = torch.randn(2, 6, 16), torch.randn(2, 6, 8) if conditioned else None
    mask = torch.arange(6)[None, :] > torch.arange(6)[:, None]
    if conditioned:
        shift, scale, gate, *_ = block.modulation(cond).chunk(6, dim=-1)
        h = block.norm_attention(x) * (1 + scale) + shift
    else:
        h, gate = block.norm_attention(x), 1.0
    attended = x + gate * block.attention(h, h, h, attn_mask=mask, need_weights=False)[0]
    output, _ = block.extend(x, None, mask, cond)
    mlp_input = block.norm_mlp(attended)
    if conditioned:
        _, _, _, shift_m, scale_m, gate_m = block.modulation(cond).chunk(6, dim=-1)
        expected = attended + gate_m * block.mlp(mlp_input * (1 + scale_m) + shift_m)
    else:
        expected = attended + block.mlp(mlp_input)
    assert torch.allclose(output, expected, atol=1e-5)


def test_transformer_rejects_more_frames_than_it_was_built_for():
    predictor = CausalTransformerPredictor(8, 1, 3, max_frames=2, depth=1, heads=2, hidden_dim=16)
    with pytest.raises(ValueError, match="at most 2 frames"):
        predictor(torch.zeros(1, 3, 1, 8), torch.zeros(1, 3, 3))


def test_conv_encoder_pooled_and_token_shapes_and_size_check():
    images = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    assert ConvEncoder(64, 16, (8, 8, 8, 8)).forward(images).shape == (2, 1, 16)
    assert ConvEncoder(64, 16, (8, 8, 8, 8), tokens=True).forward(images).shape == (2, 16, 16)
    with pytest.raises(ValueError, match=r"expects images \(B, 64, 64, 3\); got \(2, 32, 32, 3\)"):
        ConvEncoder(64, 16, (8, 8, 8, 8))(images[:, :32, :32])


def test_timm_encoder_loads_local_pretrained_weights_and_freezes(tmp_path):
    import timm

    reference = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=0)
    weights = tmp_path / "weights.pth"
    torch.save(reference.state_dict(), weights)
    encoder = TimmEncoder("vit_tiny_patch16_224", None, pretrained=True, frozen=True, tokens=True, image_size=32,
                          pretrained_file=str(weights))
    for name, value in reference.state_dict().items():
        assert torch.equal(encoder.backbone.state_dict()[name], value), name
    assert not any(p.requires_grad for p in encoder.parameters())
    out = encoder(torch.randint(0, 256, (2, 48, 48, 3), dtype=torch.uint8))  # resized to 32
    assert out.shape == (2, 4, 192) and encoder.num_tokens == 4
    encoder.train()
    assert not encoder.backbone.training  # frozen statistics stay frozen


def test_timm_encoder_projects_when_trainable():
    encoder = TimmEncoder("vit_tiny_patch16_224", 24, tokens=False, image_size=32)
    assert encoder(torch.zeros(3, 32, 32, 3, dtype=torch.uint8)).shape == (3, 1, 24) and encoder.embed_dim == 24


def test_unknown_or_mismatched_encoder_is_explained():
    cfg = {"name": "cnv", "embed_dim": 8}
    with pytest.raises(ValueError, match="unknown encoder 'cnv'; did you mean 'conv'"):
        build_encoder(cfg, "pixels", (64, 64, 3))
    with pytest.raises(ValueError, match="encoder 'conv' reads pixels observations, but model.obs_type is 'state'"):
        build_encoder({**cfg, "name": "conv"}, "state", (6,))


def test_vicreg_terms():
    unit = torch.randn(4096, 8)
    assert vicreg_variance(unit * 2) == pytest.approx(0.0, abs=1e-6)
    assert vicreg_variance(torch.zeros(100, 8)) == pytest.approx(1.0, abs=0.02)
    correlated = torch.randn(4096, 1).repeat(1, 8)
    assert vicreg_covariance(correlated) > 10 * vicreg_covariance(unit)


def test_sigreg_is_low_for_gaussian_and_high_for_collapsed_or_scaled():
    generator = torch.Generator().manual_seed(0)
    gaussian = sigreg(torch.randn(2048, 16, generator=generator), generator=torch.Generator().manual_seed(1))
    collapsed = sigreg(torch.zeros(2048, 16) + 0.3, generator=torch.Generator().manual_seed(1))
    scaled = sigreg(5 * torch.randn(2048, 16, generator=generator), generator=torch.Generator().manual_seed(1))
    assert gaussian < 2.0 and collapsed > 50 * gaussian and scaled > 50 * gaussian
    z = torch.randn(256, 4, requires_grad=True)
    sigreg(z).backward()
    assert torch.isfinite(z.grad).all()


def test_inverse_dynamics_head_and_temporal_term_shapes():
    head = InverseDynamicsHead(8, 2, 3)
    z = torch.randn(4, 5, 2, 8)
    assert head(z[:, :-1], z[:, 1:]).shape == (4, 4, 3)
    assert temporal_smoothness(torch.ones(2, 3, 1, 4)) == 0


def test_effective_rank_counts_the_directions_used():
    line = torch.randn(1000, 1) * torch.ones(1, 16)
    assert effective_rank(line) == pytest.approx(1.0, abs=0.05)
    assert effective_rank(torch.randn(5000, 16)) > 14
    assert embedding_std(torch.zeros(10, 4)) == 0


def test_linear_probe_r2_is_one_for_linear_targets_and_near_zero_for_noise():
    z = torch.randn(2000, 10)
    y = z @ torch.randn(10, 3) + 0.5
    assert linear_probe_r2(z[:1000], y[:1000], z[1000:], y[1000:]) > 0.99
    noise = torch.randn(2000, 3)
    assert abs(float(linear_probe_r2(z[:1000], noise[:1000], z[1000:], noise[1000:]))) < 0.05


def test_distance_rank_correlation_is_one_for_a_monotone_map_and_low_for_noise():
    from jepa_wm.metrics import distance_rank_correlation

    coordinates = torch.rand(200, 2)
    rotated = coordinates @ torch.tensor([[0.6, -0.8], [0.8, 0.6]]) * 3 + 1  # distances scaled, ranks kept
    assert distance_rank_correlation(torch.cat([rotated, torch.zeros(200, 5)], 1), coordinates) == pytest.approx(1.0)
    assert abs(float(distance_rank_correlation(torch.randn(200, 8), coordinates))) < 0.1
    folded = torch.cat([coordinates[:, :1], (coordinates[:, 1:] - 0.5).abs()], 1)  # mirror images look alike
    assert 0.3 < float(distance_rank_correlation(folded, coordinates)) < 0.95


def test_frame_stack_mlp_sees_exactly_its_last_frames():
    predictor = randomize(MLPPredictor(8, 1, 3, hidden_dim=32, context=2))
    z, actions = torch.randn(2, 5, 1, 8), torch.randn(2, 5, 3)
    output = predictor(z, actions)
    older = z.clone()
    older[:, 2] += 1.0  # frame 2 is in the context of outputs 2 and 3 only
    changed = predictor(older, actions)
    assert torch.allclose(changed[:, :2], output[:, :2], atol=1e-6) and torch.allclose(changed[:, 4:], output[:, 4:], atol=1e-6)
    assert not torch.allclose(changed[:, 3], output[:, 3])  # the previous frame matters: it shows motion
    markov = randomize(MLPPredictor(8, 1, 3, hidden_dim=32))
    assert torch.allclose(markov(older, actions)[:, 3], markov(z, actions)[:, 3])


def test_frame_stack_predict_next_is_the_last_output_of_the_full_forward():
    predictor = randomize(MLPPredictor(8, 2, 3, hidden_dim=32, context=3))
    z, actions = torch.randn(4, 3, 2, 8), torch.randn(4, 3, 3)
    assert torch.allclose(predictor.predict_next(z, actions), predictor(z, actions)[:, -1], atol=1e-6)


@pytest.mark.parametrize("user_setting, expected", [({}, "1000"), ({"OMP_WAIT_POLICY": "ACTIVE"}, None),
                                                    ({"GOMP_SPINCOUNT": "5"}, "5")])
def test_importing_jepa_wm_sets_brief_spinning_unless_the_user_chose_a_wait_setting(user_setting, expected):
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import os, jepa_wm; print(os.environ.get('GOMP_SPINCOUNT'))"
    output = subprocess.run([sys.executable, "-c", code], env={**env, **user_setting}, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert output == str(expected)
