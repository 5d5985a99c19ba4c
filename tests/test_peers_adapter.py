"""The adapter that lets our planner call a peer's world model (benchmarks/peers/plan_peers.py) pairs each frame's
embedding with the action taken from it, slides the peer's window, and z-scores actions as the peer was trained."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "peers"))
from plan_peers import PeerWorldModel  # noqa: E402


class AdditivePeer(torch.nn.Module):
    """A stand-in with LeWM's interface: next embedding = last embedding + the last action's embedding; it records
    the windows it is asked to predict from."""

    def __init__(self, num_frames: int):
        super().__init__()
        self.predictor = torch.nn.Module()
        self.predictor.num_frames = num_frames
        self.action_encoder = torch.nn.Identity()
        self.windows = []

    def predict(self, embeddings, action_embeddings):
        self.windows.append((embeddings.shape[1], action_embeddings.shape[1]))
        return embeddings + action_embeddings  # (B, T, D): the last row is the next frame's


def test_a_rollout_pairs_each_frame_with_the_action_taken_from_it_and_slides_the_peers_window():
    peer_model = AdditivePeer(num_frames=2)
    mean, std = np.array([1.0, -1.0]), np.array([2.0, 0.5])
    peer = PeerWorldModel(peer_model, {"img_size": 64, "data": {"dataset": {"frameskip": 1}}}, mean, std)
    assert peer.history == 2 and peer.action_dim == 2
    z_history = torch.tensor([[[[0.0, 0.0]], [[10.0, 10.0]]]])  # (1, H=2, 1, D=2)
    past = torch.tensor([[[5.0, 5.0]]])  # the action taken from the first history frame
    candidates = torch.tensor([[[3.0, 1.0], [1.0, -1.0], [-1.0, 0.0]]])  # (1, K=3, A=2), env units
    predicted = peer.rollout(z_history, candidates, past)
    normalised = (candidates[0] - torch.tensor(mean, dtype=torch.float32)) / torch.tensor(std, dtype=torch.float32)
    expected = torch.tensor([10.0, 10.0]) + normalised.cumsum(0)  # each step adds the z-scored action taken
    assert predicted.shape == (1, 3, 1, 2)
    assert torch.allclose(predicted[0, :, 0], expected)
    assert peer_model.windows == [(2, 2), (2, 2), (2, 2)]  # never more frames than the predictor's num_frames
    peer = PeerWorldModel(peer_model, {"img_size": 64, "data": {"dataset": {"frameskip": 5}}}, mean, std)
    assert peer.action_dim == 10 and torch.equal(peer.action_std, torch.tensor([2.0, 0.5] * 5))  # 5 env actions a step


class PositionReader:
    """A model with our interface that reads the exact position written into each frame and predicts it perfectly
    (position + the sum of the actions taken): the readings must call it a perfect world model."""

    history, frameskip = 2, 3

    def encode(self, frames):
        raw = torch.as_tensor(frames)[..., 0, :2, :2].long()  # (B, T, 2, 2): high and low byte per coordinate
        return ((raw[..., 0] * 256 + raw[..., 1]).double() / 100 - 100)[:, :, None, :]

    encode_target = encode

    def rollout(self, z_history, actions, past_actions=None):
        steps = actions.double().reshape(*actions.shape[:2], self.frameskip, 2).sum(2).cumsum(1)
        return z_history[:, -1:] + steps[:, :, None, :]


class NoiseReader(PositionReader):
    """Embeddings that hold nothing of the frame."""

    def encode(self, frames):
        return torch.randn(*torch.as_tensor(frames).shape[:2], 1, 2, dtype=torch.float64)

    encode_target = encode


def random_walk_file(path, episodes=10, rows=40, seed=0):
    """stable-worldmodel's HDF5 layout: position_{t+1} = position_t + action_t, each frame holding its position."""
    import h5py

    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, size=(episodes, rows, 2))
    positions = np.concatenate([np.zeros((episodes, 1, 2)), actions[:, :-1].cumsum(1)], axis=1)
    actions[:, -1] = np.nan  # the last row's action, as their collector leaves it
    encoded = np.round((positions + 100) * 100).astype(np.int64)
    pixels = np.zeros((episodes, rows, 4, 4, 3), np.uint8)
    pixels[..., 0, :2, 0], pixels[..., 0, :2, 1] = encoded // 256, encoded % 256
    with h5py.File(path, "w") as file:
        file["pixels"] = pixels.reshape(-1, 4, 4, 3)
        file["action"] = actions.reshape(-1, 2).astype(np.float32)
        file["position"] = (encoded / 100 - 100).reshape(-1, 2).astype(np.float32)
        file["ep_len"] = np.full(episodes, rows, np.int32)
        file["ep_offset"] = np.arange(episodes, dtype=np.int64) * rows


def test_the_readings_call_a_perfect_world_model_perfect_and_an_embedding_of_noise_empty(tmp_path):
    from readings import readings

    data = tmp_path / "walk.h5"
    random_walk_file(data)
    perfect = readings(PositionReader(), str(data), episodes=8, count=96, steps=4)
    assert perfect["probe_r2"] > 0.999 and perfect["distance_rank_correlation"] > 0.999
    # frames, actions and predictions line up: a model that knows the dynamics drifts by nothing
    assert len(perfect["rollout_ratio"]) == 4 and max(perfect["rollout_ratio"]) < 1e-6
    torch.manual_seed(0)
    noise = readings(NoiseReader(), str(data), episodes=8, count=96, steps=4)
    assert noise["probe_r2"] < 0.2 and abs(noise["distance_rank_correlation"]) < 0.2
    assert min(noise["rollout_ratio"]) > 0.5
