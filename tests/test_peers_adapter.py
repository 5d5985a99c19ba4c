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
