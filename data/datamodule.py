"""Lightning data module over a collected dataset directory."""

from __future__ import annotations

import hashlib
import signal

import pytorch_lightning as pl
from jepa_wm.data.dataset import EpisodeStore, TrajectoryWindowDataset, collate_windows, load_episodes, split_episodes
from torch.utils.data import DataLoader, DistributedSampler

from jepa_wm.errors import ConfigError


class TrajectoryDataModule(pl.LightningDataModule):
    """Train/val windows split by episode, from a dataset written by ``jepa-wm collect``.

    ``num_frames`` is what the model needs per sample: its history plus its rollout horizon.
    Windows are read from disk as batches are drawn (see ``EpisodeStore``), so each process, DataLoader
    worker or DDP rank, reads only the windows of its own batches.
    """

    def __init__(
        self,
        path: str,
        obs_type: str,
        num_frames: int,
        frameskip: int = 1,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        self.path, self.obs_type = path, obs_type
        self.num_frames, self.frameskip = num_frames, frameskip
        self.batch_size, self.val_fraction = batch_size, val_fraction
        self.num_workers, self.seed = num_workers, seed
        self.episodes: EpisodeStore | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.episodes is not None:
            return
        episodes = load_episodes(self.path, self.obs_type)
        train_ids, val_ids = split_episodes(episodes.num_episodes, self.val_fraction, self.seed)
        try:
            self.train_set = TrajectoryWindowDataset(episodes, train_ids, self.num_frames, self.frameskip)
            self.val_set = TrajectoryWindowDataset(episodes, val_ids, self.num_frames, self.frameskip)
        except ValueError as error:
            raise ConfigError(f"model.history + model.rollout_steps = {self.num_frames} frames at model.frameskip "
                              f"{self.frameskip} do not fit the data in {episodes.path}: {error}") from error
        self.episodes = episodes

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.episodes.obs_shape

    @property
    def action_dim(self) -> int:
        """Action size per model step: the env's action size times ``frameskip``."""
        return self.episodes.action_size * self.frameskip

    @property
    def physics_size(self) -> int:
        return self.episodes.physics_size

    def describe(self) -> dict:
        """What a trained model must remember about its data to plan in the same task.

        ``dataset`` is the directory (a list of them for several datasets); ``dataset_sha256`` names the data
        (resume refuses other data): the manifest header's hash, or for several datasets the hash of theirs in
        order (the order numbers the episodes, so it decides the train/val split)."""
        manifest, paths = self.episodes.manifest, [str(path.resolve()) for path in self.episodes.paths]
        headers = [part["header_sha256"] for part in self.episodes.manifests]
        return {
            "config": manifest["env"],
            "action_low": manifest["action"]["low"],
            "action_high": manifest["action"]["high"],
            "frameskip": self.frameskip,
            "dataset": paths[0] if len(paths) == 1 else paths,
            "dataset_sha256": headers[0] if len(headers) == 1 else hashlib.sha256(" ".join(headers).encode()).hexdigest(),
        }

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        sampler = None
        if shuffle:
            trainer = self.trainer
            sampler = ResumableShuffle(dataset, self.batch_size, self.seed,
                                       rank=trainer.global_rank if trainer else 0,
                                       world_size=trainer.world_size if trainer else 1,
                                       batches_done=self._batches_trained)
        return (StepResumedLoader if shuffle else DataLoader)(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=shuffle and len(dataset) >= self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_windows,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_ignore_interrupts,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def _batches_trained(self) -> int:
        """Training batches this process has taken so far (restored with the step when a run resumes)."""
        trainer = self.trainer
        return trainer.global_step * trainer.accumulate_grad_batches if trainer else 0


class StepResumedLoader(DataLoader):
    """A loader whose place in the data is the trainer's step (see ``ResumableShuffle``): nothing else to save.

    Lightning saves and restores the state of loaders that have one, and warns that any other loader
    resumed mid-epoch is unreliable; this one resumes exactly from the restored step.
    """

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """The step, restored with the trainer's loops, already says where the stream goes on."""


class ResumableShuffle(DistributedSampler):
    """The training windows as a stream of passes, each pass a permutation seeded by (seed, pass), where
    the position in the stream is the number of batches trained so far.

    Why: a run stopped mid-epoch and resumed then draws exactly the batches an uninterrupted run would
    have drawn next, in the same order (a plain shuffling loader starts the epoch again in a new order,
    so some windows are trained on twice and others skipped). Each process of a multi-process run takes
    its own share of every pass (``rank::world_size``, as ``DistributedSampler``); being one, this
    sampler is kept as it is by Lightning under DDP. An iterator runs to the end of its pass; the next
    one starts where training then is.
    """

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 batches_done=lambda: 0):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.batches_done = batch_size, batches_done

    def __iter__(self):
        per_pass = max(1, self.num_samples // self.batch_size)  # the loader drops a last, partial batch
        done = self.batches_done()
        self.set_epoch(done // per_pass)  # the pass, whatever epoch number the trainer sets
        share = list(super().__iter__())
        return iter(share[(done % per_pass) * self.batch_size:])


def _ignore_interrupts(worker_id: int) -> None:
    """Ctrl-C reaches every process of the terminal's group: a loader worker leaves it to the training process,
    which stops after the batch in progress and saves it (see jepa_wm.training.stop_signals_as_termination)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
