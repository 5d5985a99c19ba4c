"""Training runs: the Trainer, loggers and checkpoints around a ``JEPAWorldModel`` (the module that trains a
``WorldModel``).

A run directory holds ``config.yaml`` (what the run does, written once it really starts),
``checkpoints/last.ckpt`` (the newest state: written at every validation and at the end),
``checkpoints/best.ckpt`` (the best by the selection metric), ``csv/metrics.csv`` (the whole metric
history, across resumes) and the W&B run. Checkpoints are written atomically, so a kill at any moment
leaves the previous ones intact; ``resume=true`` continues in place from ``last.ckpt`` after any number
of kills.

The data module is passed in (anything with ``setup``, ``obs_shape``, ``action_dim`` and
``describe()``, like ``data.TrajectoryDataModule``), so this package stays independent of ``data``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import inspect
import logging
import os
import re
import shutil
import sys
import signal
import threading
import warnings
from pathlib import Path
from weakref import proxy

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from jepa_wm.checkpoint import export_weights, read_checkpoint
from jepa_wm.config import to_dict
from jepa_wm.errors import ConfigError, TrainingTerminated, did_you_mean, first_line
from jepa_wm.files import (
    DirectoryLock,
    atomic_path,
    atomic_write,
    check_output_directory,
    remove_temporaries,
    write_text_atomic,
)
from jepa_wm.heads import head_families
from jepa_wm.module import JEPAWorldModel, upgrade_state_dict

RUN_DIRECTORY_VARIABLE = "JEPA_WM_RUN_DIRECTORY"  # shared with the processes a DDP launcher starts

# What resume=true may not change, whatever the parameters: the train/val split, and what the model's inputs
# and outputs mean. Any other setting may change on resume as long as the model's parameters keep their
# shapes (a new loss weight, learning rate or regularizer setting may; a wider encoder may not).
FIXED_ON_RESUME = ("seed", "data.val_fraction", "model.obs_type", "model.frameskip", "model.history")


def run_directory(cfg: DictConfig) -> Path:
    """``out=``, or a new run directory chosen once for all processes of a distributed run.

    Processes that Lightning starts inherit the first one's choice through the environment; processes a
    launcher starts separately (torchrun, SLURM's srun) name it after the launcher's job id, the same in
    every process, where a timestamp would differ by a second.
    """
    if cfg.out:
        return Path(cfg.out)
    if RUN_DIRECTORY_VARIABLE not in os.environ:
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID")
        name = f"train-job-{job}" if job and job != "none" else datetime.datetime.now().strftime("train-%Y%m%d-%H%M%S")
        os.environ[RUN_DIRECTORY_VARIABLE] = str(Path("runs") / name)
    return Path(os.environ[RUN_DIRECTORY_VARIABLE])


# ------------------------------------------------------------------------------------ checkpoints
def save_checkpoint_atomically(trainer: pl.Trainer, path: Path, weights_only: bool = False) -> None:
    """``trainer.save_checkpoint`` through ``atomic_write``: never half a file, and no temporary left behind
    when the disk is full. Every process takes part (the strategy gathers the state); rank 0 writes."""
    path = Path(path)
    if not trainer.is_global_zero:  # the others take part in gathering the state; rank 0 writes the file
        trainer.save_checkpoint(path.with_name(f".{path.name}.rank-{trainer.global_rank}.partial"), weights_only)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            trainer.save_checkpoint(temporary, weights_only)
    trainer.strategy.barrier("save_checkpoint_atomically")


class BestCheckpoint(ModelCheckpoint):
    """``best.ckpt``: the best by ``metric`` (``best.metric`` in the config), overwritten in place (no
    ``-v1`` copies) and atomically."""

    def __init__(self, directory: Path, metric: str, mode: str):
        super().__init__(dirpath=directory, filename="best", monitor=metric, mode=mode, save_top_k=1,
                         save_last=False, auto_insert_metric_name=False, enable_version_counter=False)

    def load_state_dict(self, state_dict: dict) -> None:
        """Keep the best score across resumes, also when the run directory was copied or moved (Lightning
        would forget it then, and the next validation would replace best.ckpt whatever its score)."""
        def here(path):
            return os.path.join(self.dirpath, os.path.basename(path)) if path else path

        state = dict(state_dict, dirpath=self.dirpath, best_model_path=here(state_dict.get("best_model_path")),
                     kth_best_model_path=here(state_dict.get("kth_best_model_path")),
                     last_model_path=here(state_dict.get("last_model_path")),
                     best_k_models={here(path): score for path, score in (state_dict.get("best_k_models") or {}).items()})
        super().load_state_dict(state)

    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        """A metric logged less often than validation runs (``eval/success_rate`` every
        ``eval.every_n_steps``) is simply not there yet at some validations: wait for it."""
        if self.monitor in monitor_candidates:
            super()._save_topk_checkpoint(trainer, monitor_candidates)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if not self.best_model_path and trainer.is_global_zero:
            logged = sorted(key for key in trainer.callback_metrics if key.startswith(("val/", "eval/")))
            rank_zero_warn(f"best.metric={self.monitor} was never logged, so there is no best.ckpt; "
                           f"logged metrics: {', '.join(logged) or 'none'}")

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        save_checkpoint_atomically(trainer, Path(filepath), self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class LatestCheckpoint(pl.Callback):
    """``last.ckpt``: the newest state, written after every validation and when training ends."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.saved_step = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """SIGTERM (``kill``, ``docker stop``, preemption): Lightning stops after a finished batch; keep that step."""
        if isinstance(exception, SIGTERMException) and self.saved_step != trainer.global_step:
            self.save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A validation at this very step already saved these weights. Its loop bookkeeping is the kind
        # Lightning resumes from exactly; the end-of-training kind would shift logged steps by one.
        if self.saved_step != trainer.global_step:
            self.save(trainer)

    def save(self, trainer: pl.Trainer) -> None:
        # Metrics first: every row up to this step is on disk before a checkpoint claims the step
        # (rows written after it are dropped on resume, see truncate_metric_history).
        for logger in trainer.loggers:
            logger.save()
        save_checkpoint_atomically(trainer, self.path)
        self.saved_step = trainer.global_step


class Snapshots(pl.Callback):
    """``step-<N>.ckpt`` copies of the newest state at chosen steps (``checkpoints_at``), e.g. to compare
    what training longer does to planning. A step without validation is saved right after its batch."""

    def __init__(self, directory: Path, steps):
        self.directory, self.steps = Path(directory), {int(step) for step in steps}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_index) -> None:
        if trainer.global_step in self.steps:
            path = self.directory / f"step-{trainer.global_step}.ckpt"
            if not path.is_file():
                save_checkpoint_atomically(trainer, path)


class RunRecord(pl.Callback):
    """Once training really starts (checkpoint restored, sanity check passed): writes ``config.yaml`` and
    drops the metric rows after ``keep_rows_until`` (those a resumed run repeats), so a start that fails
    changes nothing on disk. Remembers whether the run started and whether it was interrupted (Ctrl-C)."""

    def __init__(self, cfg: DictConfig, out: Path, keep_rows_until: int = -1):
        self.cfg, self.out, self.keep_rows_until = cfg, out, keep_rows_until
        self.interrupted = self.started = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            truncate_metric_history(self.out / "csv" / "metrics.csv", self.keep_rows_until)
            write_text_atomic(self.out / "config.yaml", f"{RUN_CONFIG_HEADER} (jepa-wm train; resume=true continues "
                                                          f"this run)\n{OmegaConf.to_yaml(self.cfg)}")
        self.started = True

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.interrupted = isinstance(exception, KeyboardInterrupt)


# ---------------------------------------------------------------------------------------- loggers
class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv``; this one continues it (resume)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        """A new metric widens the header: the whole history is rewritten, atomically (a kill during
        Lightning's in-place rewrite would leave half of it)."""
        with open(self.metrics_file_path, newline="") as file:
            rows = list(csv.DictReader(file))
        write_metric_rows(Path(self.metrics_file_path), fieldnames, rows)


class HistoryCSVLogger(CSVLogger):
    """CSV metrics that survive resumes: ``csv/metrics.csv`` keeps every row of every attempt."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def truncate_metric_history(path: Path, after_step: int) -> None:
    """Drop rows logged after ``after_step``: a resumed run repeats those steps and logs them again.

    Rows carry Lightning's logging step, one less than the number of optimizer steps done: a checkpoint
    at global step G owns the rows up to step G - 1.
    """
    if not path.is_file():
        return
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        fields, rows = reader.fieldnames or [], list(reader)
    kept = [row for row in rows if row.get("step") in (None, "") or int(float(row["step"])) <= after_step]
    if len(kept) != len(rows):
        write_metric_rows(path, fields, kept)


def write_metric_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    def write(file) -> None:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write, text=True)


class _WithoutAdvertisements(logging.Filter):
    """Lightning's '💡 Tip: ... try installing litlogger/litmodels' lines: nothing a run's user needs to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith("💡")


def quiet_third_party_notices() -> None:
    """Silence what a user can do nothing about: Lightning's tips and a deprecation inside Lightning itself
    (``isinstance(treespec, LeafSpec)``). Lightning's own warnings about the run (a logging interval larger than
    the epoch, ...) stay: they name a setting the user can change."""
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(existing, _WithoutAdvertisements) for existing in rank_zero.filters):
        rank_zero.addFilter(_WithoutAdvertisements())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def wandb_mode(cfg: DictConfig) -> str:
    """The W&B mode a run logs in: ``WANDB_MODE`` from the environment wins over ``wandb.mode``."""
    return os.environ.get("WANDB_MODE", cfg.wandb.mode)


def check_wandb_login(cfg: DictConfig) -> None:
    """Online logging needs an API key; without one W&B would prompt or fail after the run directory was made."""
    if wandb_mode(cfg) != "online" or pl.utilities.rank_zero_only.rank != 0:
        return
    import wandb

    if not wandb.login(prompt=False, verify=False):
        raise ConfigError("wandb.mode=online needs a W&B API key: run `wandb login` or set WANDB_API_KEY; or log with "
                          "wandb.mode=offline and upload later with `wandb sync`")


def build_loggers(cfg: DictConfig, out: Path) -> list:
    loggers = [HistoryCSVLogger(save_dir=str(out), name="csv", version="")]
    mode = wandb_mode(cfg)
    if mode != "disabled":
        # Reuse the run id on resume so W&B continues the same run instead of starting a new one; a fresh start
        # (after one that saved nothing) is a new W&B run.
        id_file = out / "wandb_run_id.txt"
        run_id = id_file.read_text().strip() if cfg.resume and id_file.is_file() else None
        logger = WandbLogger(
            project=cfg.wandb.project, entity=cfg.wandb.entity, name=cfg.wandb.name or out.name,
            tags=list(cfg.wandb.tags), save_dir=str(out), offline=mode == "offline", id=run_id,
            resume="allow" if run_id else None, log_model="all" if cfg.wandb.log_checkpoints and mode == "online" else False,
            config=to_dict(cfg),
        )
        logger._wandb_init.pop("anonymous", None)  # W&B warns that the setting Lightning always passes does nothing
        if run_id is None and pl.utilities.rank_zero_only.rank == 0:
            write_text_atomic(id_file, logger.experiment.id)
        loggers.append(logger)
    return loggers


# ---------------------------------------------------------------------------------------- trainer
def trainer_arguments(cfg: DictConfig) -> dict:
    """``cfg.trainer`` checked against ``pytorch_lightning.Trainer``'s signature."""
    trainer_args = to_dict(cfg.trainer)
    valid = sorted(set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"})
    for name in trainer_args:
        if name not in valid:
            raise ConfigError(f"'trainer.{name}' is not a pytorch_lightning.Trainer argument{did_you_mean(name, valid)}")
        if name in TRAINER_ARGUMENTS_OF_THE_RUN:
            raise ConfigError(f"trainer.{name} is set by jepa-wm itself ({TRAINER_ARGUMENTS_OF_THE_RUN[name]}); "
                              f"drop that override")
    return trainer_args


# The Trainer arguments a run sets from its own settings: the one way to change each.
TRAINER_ARGUMENTS_OF_THE_RUN = {
    "default_root_dir": "it is out=",
    "callbacks": "checkpoints, evaluation and metrics are the run's; see best.*, eval.*, checkpoints_at",
    "logger": "CSV always, W&B by wandb.mode",
    "enable_checkpointing": "last.ckpt and best.ckpt are always written: they are what resume and plan read",
}


def build_trainer(cfg: DictConfig, out: Path, callbacks=(), loggers=None) -> pl.Trainer:
    checkpoints = out / "checkpoints"
    standard = [BestCheckpoint(checkpoints, cfg.best.metric, cfg.best.mode), LatestCheckpoint(checkpoints / "last.ckpt")]
    if cfg.checkpoints_at:
        standard.append(Snapshots(checkpoints, cfg.checkpoints_at))
    return pl.Trainer(
        **trainer_arguments(cfg), default_root_dir=str(out), callbacks=[*standard, *callbacks],
        logger=build_loggers(cfg, out) if loggers is None else loggers,
    )


# ----------------------------------------------------------------------------------------- resume
def flatten(tree, prefix: str = "") -> dict:
    """``{a: {b: 1}}`` -> ``{"a.b": 1}``."""
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def check_resume(checkpoint: dict, cfg: DictConfig, model: JEPAWorldModel, data_description: dict, path: Path) -> None:
    """Refuse, naming the keys, a resume whose config the checkpoint cannot continue.

    The train/val split and the meaning of the model's inputs (``FIXED_ON_RESUME``), the model's parameter
    shapes and the dataset are fixed by the checkpoint; every other setting (learning rate, schedule, loss
    and regularizer weights, batch size, Trainer settings...) is applied from the new config.
    """
    before = flatten(checkpoint["hyper_parameters"].get("run_config") or {})
    after = flatten(to_dict(cfg))
    differing = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    changed = [key for key in differing if key in FIXED_ON_RESUME]
    old_shapes = {name: tuple(tensor.shape) for name, tensor in upgrade_state_dict(checkpoint["state_dict"]).items()}
    new_shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    if old_shapes != new_shapes:  # e.g. a wider encoder, or inverse_dynamics 0 -> 1 (its head appears)
        changed += [key for key in differing if key.startswith("model.") and key not in changed] or [
            "the model's parameters (the data's observation shape differs)"]
    old_data = checkpoint["hyper_parameters"].get("env") or {}
    for key in ("config", "action_low", "action_high", "frameskip"):
        if old_data.get(key) != data_description.get(key):
            changed.append(f"the data's {key.replace('config', 'task')} (data.path holds another dataset)")
    if "dataset_sha256" in old_data and old_data["dataset_sha256"] != data_description.get("dataset_sha256"):
        # The same task collected again (another seed or size) changes the train/val split and the data.
        changed.append(f"the dataset (data.path holds another dataset than {old_data.get('dataset')}: its manifest "
                       f"header differs)")
    if changed:
        details = "; ".join(f"{key}: {before.get(key)!r} -> {after.get(key)!r}" if key in before or key in after
                            else key for key in changed)
        raise ConfigError(f"resume=true cannot change what {path} was trained with ({details}); drop these "
                          f"overrides to continue, or start a new run with another out=")


# -------------------------------------------------------------------------------------------- fit
def fit(cfg: DictConfig, datamodule, callbacks=()) -> Path:
    """Train the world model of ``cfg`` on ``datamodule``; returns the run directory.

    Everything that can be wrong with the config, the data or the checkpoint to resume is checked before
    anything is written; a fresh run that fails before its first checkpoint leaves nothing behind. One
    process at a time trains in a run directory (a second is refused). Ctrl-C ends with a
    ``KeyboardInterrupt``, SIGTERM (``kill``, ``docker stop``, a scheduler's preemption) with
    ``TrainingTerminated`` after saving ``last.ckpt`` at the current step; both say how to continue.
    """
    out = run_directory(cfg)
    last = out / "checkpoints" / "last.ckpt"
    received = []  # the stop signals that arrived, in order
    try:
        with stop_signals_as_termination(received):
            return _fit(cfg, datamodule, callbacks, out)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        how = f"rerun with resume=true out={out} to continue" if last.is_file() else "nothing was saved; rerun it"
        raise KeyboardInterrupt(f"training interrupted; {how}") from None
    except SIGTERMException:
        step = int(read_checkpoint(last).get("global_step", 0)) if last.is_file() else 0
        how = (f"last.ckpt holds step {step}: rerun with resume=true out={out} to continue" if last.is_file()
               else "nothing was saved; rerun it")
        if signal.SIGINT in received:
            raise KeyboardInterrupt(f"training interrupted (Ctrl-C); {how}") from None
        raise TrainingTerminated(f"training stopped by SIGTERM; {how}") from None


@contextlib.contextmanager
def stop_signals_as_termination(received: list):
    """Ctrl-C (SIGINT) and SIGHUP (the terminal or SSH session that started training closed) are handled like
    SIGTERM: Lightning stops after the batch in progress and ``last.ckpt`` keeps that step, instead of the
    process dying with everything since the last validation. A second Ctrl-C stops at once; a signal before
    Lightning listens for SIGTERM (setting up) interrupts as Python's default does. ``received`` collects them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = [getattr(signal, name) for name in ("SIGINT", "SIGHUP") if hasattr(signal, name)]

    def stop(signum, frame):
        listening = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        received.append(signum)
        if signum == signal.SIGINT and (received.count(signal.SIGINT) > 1 or not listening):
            raise KeyboardInterrupt
        if not listening:
            signal.raise_signal(signal.SIGTERM)
            return
        if signum == signal.SIGINT:
            print("\nstopping after the current step and saving last.ckpt (Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = {signum: signal.signal(signum, stop) for signum in stops}
    # Lightning adds any SIGTERM handler it finds to its own: the command's (raise at once) must not run mid-step.
    previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# The files of a run directory that are written atomically, by folder: their temporaries are cleared on start.
RUN_TEMPORARIES = {".": ("config.yaml", "wandb_run_id.txt"), "checkpoints": ("*.ckpt",), "csv": ("metrics.csv",)}
# Everything a run writes at the top of its directory (W&B's folder included): what may be deleted as a run's.
RUN_FILES = ("config.yaml", "wandb_run_id.txt", "checkpoints", "csv", "wandb")
# The first line of every config.yaml a run writes: how a fresh start knows the file is a run's, not a user's.
RUN_CONFIG_HEADER = "# jepa-wm run config"


def is_run_config(path: Path) -> bool:
    """Whether ``path`` is a config.yaml a run wrote: with its header line, or (runs before the header) a YAML
    mapping with the training config's sections."""
    try:
        text = path.read_text()
        if text.startswith(RUN_CONFIG_HEADER):
            return True
        loaded = OmegaConf.create(text)
    except Exception:  # noqa: BLE001 - unreadable or not YAML: not a run's
        return False
    return isinstance(loaded, DictConfig) and {"data", "model", "trainer", "wandb"} <= set(loaded.keys())


def is_metric_history(path: Path) -> bool:
    """Whether ``path`` is a metrics.csv a run wrote (Lightning's header starts with its columns, ``step`` among them)."""
    try:
        with open(path, newline="") as file:
            header = next(csv.reader(file), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return "step" in header


def check_fresh_start(out: Path) -> None:
    """A run without ``last.ckpt`` to resume from may only start fresh where no checkpoint of another run is.

    ``best.ckpt`` or ``step-N.ckpt`` without ``last.ckpt`` (deleted to save space, say) is another run's
    result; a fresh start would replace them with earlier steps and rewrite their metric history. Traces
    of a start that never saved a checkpoint (metric rows, a W&B folder) are replaced once training starts.
    """
    checkpoints = sorted(path.name for path in (out / "checkpoints").glob("*.ckpt")) if (out / "checkpoints").is_dir() else []
    if checkpoints:
        raise ConfigError(f"{out} holds checkpoints of an earlier run ({', '.join(checkpoints)}) but no last.ckpt to "
                          f"resume from; choose another out=, or move those files away first")
    # Files a run would replace must be a run's own: a user's config.yaml or metrics.csv in out= stays as it is.
    config, history = out / "config.yaml", out / "csv" / "metrics.csv"
    foreign = [path for path, ours in ((config, is_run_config), (history, is_metric_history))
               if (path.exists() or path.is_symlink()) and not (path.is_file() and not path.is_symlink() and ours(path))]
    run_id = out / "wandb_run_id.txt"
    if run_id.exists() and not (run_id.is_file() and re.fullmatch(r"[A-Za-z0-9_-]{1,64}\s*", run_id.read_text(errors="replace"))):
        foreign.append(run_id)
    if foreign:
        raise ConfigError(f"out={out} holds {', '.join(str(path.relative_to(out)) for path in foreign)} that jepa-wm "
                          f"did not write, which a run would replace; choose another out= (a new directory)")


def check_trainer_settings(cfg: DictConfig) -> dict:
    """``cfg.trainer``, checked by building a throwaway ``pytorch_lightning.Trainer`` from it before anything
    is written, so that a value Lightning rejects (``precision=bf17``, ``accelerator=gpu`` without a GPU,
    ``devices=0``) is one line naming the key, not a traceback after the run directory was created."""
    import logging
    import warnings

    settings = trainer_arguments(cfg)
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pl.Trainer(**{**settings, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                          "enable_model_summary": False})
    except Exception as error:
        message = first_line(error) or type(error).__name__
        named = [key for key in settings if key in message] or [
            key for key, value in settings.items() if value is not None and f"{value}" in message]
        given = ", ".join(f"trainer.{key}={settings[key]}" for key in named) or "the trainer settings"
        raise ConfigError(f"{given}: refused by pytorch_lightning.Trainer ({message})") from None
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    return settings


def _fit(cfg: DictConfig, datamodule, callbacks, out: Path) -> Path:
    check_trainer_settings(cfg)  # fails early on a mistyped or refused Trainer argument
    check_wandb_login(cfg)
    quiet_third_party_notices()
    if cfg.best.mode not in ("min", "max"):
        raise ConfigError(f"best.mode must be min or max; got {cfg.best.mode!r}")
    if str(cfg.best.metric).startswith("eval/") and not cfg.eval.every_n_steps:
        raise ConfigError(f"best.metric={cfg.best.metric} is logged only by planning during training; "
                          f"set eval.every_n_steps (e.g. =500) or choose a val/ metric")
    resume_from = out / "checkpoints" / "last.ckpt"
    check_output_directory(out)
    if out.is_dir() and pl.utilities.rank_zero_only.rank == 0:  # (the other processes start under rank 0's lock)
        with DirectoryLock(out, "a training run"):
            pass  # a run at work in out= is named as such, before its files are judged below as another run's
    if cfg.resume and not resume_from.is_file():
        raise ConfigError(f"resume=true but {resume_from} does not exist; drop resume or point out= at an earlier run")
    if not cfg.resume and resume_from.is_file():
        raise ConfigError(f"{out} already holds a run; pass resume=true to continue it, or choose another out=")
    if not cfg.resume:
        check_fresh_start(out)
    checkpoint = read_checkpoint(resume_from) if cfg.resume else None
    pl.seed_everything(cfg.seed, workers=True)
    datamodule.setup("fit")
    try:
        model = JEPAWorldModel(cfg.model, datamodule.obs_shape, datamodule.action_dim, env=datamodule.describe(),
                               run_config=to_dict(cfg), load_pretrained=checkpoint is None)
    except Exception as error:  # whatever the building blocks refuse of the user's model settings
        detail = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        raise ConfigError(f"the model config is invalid: {detail}") from error
    if checkpoint is not None:
        check_resume(checkpoint, cfg, model, datamodule.describe(), resume_from)
    # Rows after the step training continues from (all rows of a fresh start) are dropped once it really
    # starts: a start that fails before then changes no history.
    keep_rows_until = int(checkpoint.get("global_step", 0)) - 1 if checkpoint is not None else -1

    created = not out.exists()
    record = RunRecord(cfg, out, keep_rows_until)
    main_process = pl.utilities.rank_zero_only.rank == 0
    out.mkdir(parents=True, exist_ok=True)
    with DirectoryLock(out, "a training run") if main_process else contextlib.nullcontext():
        if main_process:  # what a writer killed mid-write (kill -9, power loss) left next to its target
            for directory, targets in RUN_TEMPORARIES.items():
                remove_temporaries(out / directory, targets)
        if main_process and checkpoint is not None:
            keep_stored_heads(out / "checkpoints")
        before = {entry.name for entry in out.iterdir()}
        trainer = None
        try:
            trainer = build_trainer(cfg, out, [record, *callbacks])
            trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume_from) if checkpoint else None,
                        weights_only=True)
        except BaseException:
            trained = record.started and trainer is not None and trainer.global_step > 0
            if main_process and not trained:
                _remove_new_entries(out, before, created)
            if record.interrupted:  # Lightning turns Ctrl-C into SystemExit(1) after its graceful shutdown
                raise KeyboardInterrupt from None
            raise
        finally:
            finish_wandb_runs(trainer)
    return out


def keep_stored_heads(checkpoints: Path) -> None:
    """Before a resume: a copy of ``last.ckpt`` / ``best.ckpt`` that holds heads (a learned cost or a policy
    trained into it after training) is kept as ``<name>-step<N>-with-heads.ckpt``, ready to plan with.

    Lightning rewrites both from its own state, which holds no heads; and a head fits the weights it was trained
    on, not the ones training goes on to, so it is not carried over either: retrain it on the new checkpoint.
    """
    for name in ("last.ckpt", "best.ckpt"):
        path = checkpoints / name
        if not path.is_file():
            continue
        stored = read_checkpoint(path)
        families = [family for family in head_families() if stored.get(family.key) is not None]
        if not families:
            continue
        step = int(stored.get("global_step", 0))
        kept = checkpoints / f"{path.stem}-step{step}-with-heads.ckpt"
        if not kept.exists():
            export_weights(stored, kept)
        print(f"note: {name} holds a {' and a '.join(family.description for family in families)} for its step {step}; "
              f"resuming rewrites it without them, so they are kept in {kept} (retrain them on the resumed checkpoint "
              f"with jepa-wm {' / '.join(family.command for family in families)})", file=sys.stderr)


def checkpoint_summary(out: Path, metric: str) -> list[str]:
    """What a finished run says at its end: ``best.ckpt`` (the one to plan with) and ``last.ckpt``, each with
    its step and its value of ``metric`` (from the metric history, the last validation at or before that step)."""
    history = []
    path = out / "csv" / "metrics.csv"
    if path.is_file():
        with open(path, newline="") as file:
            history = [(int(float(row["step"])), float(row[metric])) for row in csv.DictReader(file)
                       if row.get(metric) not in (None, "") and row.get("step") not in (None, "")]
    lines = []
    for name, use in (("best.ckpt", f"the best {metric}: plan with this one"), ("last.ckpt", "the newest")):
        checkpoint = out / "checkpoints" / name
        if not checkpoint.is_file():
            continue
        step = int(read_checkpoint(checkpoint).get("global_step", 0))
        values = [value for logged, value in history if logged < step]  # a validation after step s logs at s - 1
        score = f", {metric} {values[-1]:.3f}" if values else ""
        lines.append(f"{name}: {checkpoint} (step {step}{score}; {use})")
    return lines


def finish_wandb_runs(trainer: pl.Trainer | None) -> None:
    """A training run is one W&B run: close it, so that what a notebook or script prints afterwards does not
    land in this run's log (Lightning leaves it open)."""
    for logger in trainer.loggers if trainer is not None else []:
        if isinstance(logger, WandbLogger) and logger._experiment is not None and pl.utilities.rank_zero_only.rank == 0:
            logger._experiment.finish()


def _remove_new_entries(out: Path, before: set[str], created: bool) -> None:
    """Undo a start that never trained: the run directory if it made it, else what it added to it."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for entry in out.iterdir() if out.is_dir() else []:
        if entry.name not in before:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
