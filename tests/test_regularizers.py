"""Each anti-collapse term does what it is for: its value and gradient push embeddings the intended way, and its
weight puts exactly that term into the training loss."""

import pytest
import torch

from jepa_wm.regularizers import (
    REGULARIZERS,
    InverseDynamicsHead,
    sigreg,
    slowness,
    temporal_smoothness,
    vicreg_covariance,
    vicreg_variance,
)
from tests.test_module import fake_batch, small_pixel_model


def descend(term, z: torch.Tensor, steps: int = 100, lr: float = 0.02) -> torch.Tensor:
    """Embeddings after gradient descent (Adam: steps of ~lr whatever the term's scale) on the term alone."""
    z = z.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        term(z).backward()
        optimizer.step()
    return z.detach()


def test_the_variance_hinge_spreads_collapsed_embeddings_and_leaves_spread_ones_alone():
    collapsed = 0.01 * torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
    assert vicreg_variance(collapsed) > 0.9
    assert descend(vicreg_variance, collapsed).std(dim=0).min() > collapsed.std(dim=0).max() * 10
    spread = 3 * torch.randn(256, 8, generator=torch.Generator().manual_seed(1))
    assert vicreg_variance(spread) == 0


def test_the_covariance_term_decorrelates_dimensions():
    base = torch.randn(512, 1, generator=torch.Generator().manual_seed(0))
    correlated = torch.cat([base, base + 0.1 * torch.randn(512, 1, generator=torch.Generator().manual_seed(1))], dim=1)
    after = descend(vicreg_covariance, correlated)
    assert vicreg_covariance(after) < 0.2 * vicreg_covariance(correlated)
    assert abs(torch.corrcoef(after.T)[0, 1]) < abs(torch.corrcoef(correlated.T)[0, 1])


def test_sigreg_is_small_for_a_gaussian_and_pushes_a_collapsed_cloud_toward_one():
    generator = torch.Generator().manual_seed(0)
    gaussian = torch.randn(512, 8, generator=generator)
    collapsed = 0.05 * torch.randn(512, 8, generator=generator)
    fixed = torch.Generator().manual_seed(3)

    def statistic(z):
        return sigreg(z, generator=fixed.manual_seed(3))

    assert statistic(gaussian) < 0.1 * statistic(collapsed)
    after = descend(statistic, collapsed)
    assert statistic(after) < 0.5 * statistic(collapsed) and after.std() > 2 * collapsed.std()


@pytest.mark.parametrize("term", [temporal_smoothness, slowness])
def test_temporal_terms_pull_consecutive_embeddings_together(term):
    z = torch.randn(8, 6, 1, 4, generator=torch.Generator().manual_seed(0))  # (B, T, N, D), jumping around
    after = descend(term, z)
    steps_before = (z[:, 1:] - z[:, :-1]).norm(dim=-1).mean()
    steps_after = (after[:, 1:] - after[:, :-1]).norm(dim=-1).mean()
    assert term(after) < 0.5 * term(z) and steps_after < 0.7 * steps_before


def test_slowness_cannot_be_lowered_by_shrinking_the_embeddings():
    z = torch.randn(8, 6, 1, 4, generator=torch.Generator().manual_seed(0))
    assert slowness(0.01 * z) == pytest.approx(float(slowness(z)), rel=1e-4)
    assert temporal_smoothness(0.01 * z) < 0.001 * temporal_smoothness(z)  # the plain term can


def test_the_inverse_dynamics_head_reads_the_next_embedding():
    head = InverseDynamicsHead(8, 2, 3)
    z = torch.randn(4, 5, 2, 8, generator=torch.Generator().manual_seed(0))
    assert head(z[:, :-1], z[:, 1:]).shape == (4, 4, 3)
    z_next = z[:, 1:].clone().requires_grad_(True)
    head(z[:, :-1], z_next).sum().backward()
    assert z_next.grad.abs().sum() > 0  # a head that ignored z_next could not tell which action was taken
    assert not torch.allclose(head(z[:, :-1], z[:, 1:]), head(z[:, :-1], torch.randn_like(z[:, 1:])))


def test_inverse_dynamics_learns_which_action_moved_the_embedding():
    generator = torch.Generator().manual_seed(0)
    z_now = torch.randn(256, 1, 1, 4, generator=generator)
    actions = torch.rand(256, 1, 2, generator=generator) * 2 - 1
    z_next = z_now + torch.nn.functional.pad(actions, (0, 2))[:, :, None]  # the action moves 2 dimensions
    head = InverseDynamicsHead(4, 1, 2, hidden_dim=32)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(head(z_now, z_next), actions)
        loss.backward()
        optimizer.step()
    assert loss < 0.1 * actions.var()


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_each_regularizers_weight_adds_exactly_its_term_to_the_loss(name):
    """Switching a term on adds weight x term: a term wired to the wrong weight or to nothing fails here."""
    off = small_pixel_model(*[f"model.regularizers.{other}=0" for other in REGULARIZERS])
    torch.manual_seed(0)
    on = small_pixel_model(*[f"model.regularizers.{other}={0.5 if other == name else 0}" for other in REGULARIZERS])
    on.load_state_dict({**off.state_dict(), **{k: v for k, v in on.state_dict().items() if k not in off.state_dict()}})
    batch = fake_batch(frames=on.history + on.rollout_steps)
    loss_off, _ = off.compute_losses(batch)
    loss_on, terms = on.compute_losses(batch)
    assert name in terms and terms[name] > 0
    assert float(loss_on - loss_off) == pytest.approx(0.5 * float(terms[name]), rel=1e-4, abs=1e-6)


def test_the_models_slowness_term_is_the_scale_free_one():
    model = small_pixel_model()
    z = torch.randn(4, 5, 1, 16, generator=torch.Generator().manual_seed(0))
    actions = torch.zeros(4, 4, 2)
    slow, small_slow = (REGULARIZERS["slowness"].compute(model, x, x, actions) for x in (z, 0.01 * z))
    smooth, small_smooth = (REGULARIZERS["temporal"].compute(model, x, x, actions) for x in (z, 0.01 * z))
    assert float(small_slow) == pytest.approx(float(slow), rel=1e-4) and small_smooth < 0.001 * smooth
