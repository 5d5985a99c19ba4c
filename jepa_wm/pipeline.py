"""The end-to-end pipeline behind the commands: collect -> train (world model, learned cost) -> plan.

Every script is a thin wrapper around one of these functions, so anything a script does can also be
done from Python (e.g. in a notebook) with ``jepa_wm.config.compose`` and these calls.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only
from tqdm.auto import tqdm

from jepa_wm.checkpoint import read_checkpoint
from jepa_wm.config import as_overrides, compose, decode_value, group_choices, is_plain_value, parse_overrides, to_dict
from jepa_wm.data.collect import collect_from_config
from jepa_wm.data.datamodule import TrajectoryDataModule
from jepa_wm.errors import ConfigError, TrainingTerminated
from jepa_wm.data.storage import DATASET_FILES
from jepa_wm.files import DirectoryLock, check_output_directory, remove_own_directories, save_torch_atomic
from jepa_wm.learned_cost import HEADS, CostTrainer, CostTrainingSettings, stored_with, success_targets
from jepa_wm.planning.callbacks import GoalReachingEvalCallback
from jepa_wm.planning.experiment import PLAN_FILES, finished_report, run_plan
from jepa_wm.policy import POLICY_TARGETS, PolicySettings, PolicyTrainer, relabelled_examples
from jepa_wm.stopping import StepBoundaryStops
from jepa_wm.training import RUN_FILES, fit


def datamodule_from_config(cfg: DictConfig) -> TrajectoryDataModule:
    """The data module a ``configs/train.yaml``-style config asks for (window = history + rollout)."""
    model = cfg.model
    return TrajectoryDataModule(
        cfg.data.path, obs_type=model.obs_type, num_frames=model.history + model.rollout_steps,
        frameskip=model.frameskip, batch_size=cfg.data.batch_size, val_fraction=cfg.data.val_fraction,
        num_workers=cfg.data.num_workers, seed=cfg.seed,
    )


# What a dataset may ask of the models trained on it (``train_overrides`` of its env config): model settings
# with plain values, and which of configs/learned_cost/ its planning cost is. Never the output directory, the
# logger or anything else of the run, and never an interpolation (``${oc.env:...}`` would copy the trainer's
# environment into the run's config and checkpoint).
TASK_OVERRIDE_KEY = re.compile(r"model\.[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
TASK_COST_KEY = "learned_cost"  # a file of configs/learned_cost/ by name: nothing else of that group


def task_train_overrides(dataset) -> list[str]:
    """``train_overrides`` of the env config a dataset was collected with: model settings its task needs.

    A dataset is input from anyone: each override must set a ``model.`` key to a plain value, or pick one of
    the learned costs jepa-wm ships (``learned_cost=decoded``), or the whole dataset is refused
    (``DatasetError``) before anything is trained or written. The value is judged as the config will read it
    (YAML-decoded, so an escape such as ``"\\u0024{...}"`` is seen as the ``${...}`` it becomes), never on its
    raw text.
    """
    from jepa_wm.data.storage import DatasetError, load_manifest

    try:
        manifest = load_manifest(dataset)
    except Exception:  # no readable dataset yet: training itself will say what is wrong with it
        return []
    overrides = manifest["env"].get("train_overrides") or []
    if not isinstance(overrides, list):
        raise DatasetError(f"{dataset}/manifest.json: env.train_overrides must be a list of key=value strings")
    costs = group_choices(TASK_COST_KEY)
    for item in overrides:
        key, equals, value = str(item).partition("=")
        key = key.strip()
        model_setting = TASK_OVERRIDE_KEY.fullmatch(key) and is_plain_value(decode_value(value))
        cost_choice = key == TASK_COST_KEY and value.strip() in costs
        if not (isinstance(item, str) and equals and (model_setting or cost_choice)):
            raise DatasetError(f"{dataset}/manifest.json: env.train_overrides item {str(item)[:80]!r} is refused: a "
                               f"dataset may only set model.* keys to plain values (no interpolations) and "
                               f"{TASK_COST_KEY} to one of {', '.join(costs)}")
    return list(overrides)


def train_config(argv) -> DictConfig:
    """``configs/train.yaml`` with the dataset's task overrides (see ``configs/env/*.yaml``) first and
    the command line after them, so a user's setting always wins over the task's."""
    dataset = dict(parse_overrides(argv)).get("data.path")  # composed once, with the task's settings first
    listed = decode_value(dataset) if dataset is not None else None
    if isinstance(listed, list):  # data.path=[a,b]: datasets of one task (training refuses them otherwise)
        dataset = (listed or [None])[0]
    task = task_train_overrides(dataset) if dataset else []
    return compose("train", [*task, *argv])


def train_from_config(cfg: DictConfig) -> Path:
    """Train as ``jepa-wm train`` does (with the goal-reaching callback if ``eval.every_n_steps``), then the
    learned planning cost of ``cfg.learned_cost`` for ``last.ckpt`` and ``best.ckpt``."""
    callbacks = []
    if cfg.eval.every_n_steps:
        callbacks.append(GoalReachingEvalCallback(cfg.eval.every_n_steps, cfg.eval.episodes, list(cfg.eval.plan),
                                                  cfg.seed, cfg.eval.video))
    settings = learned_cost_settings(cfg)  # refuses bad settings before training
    out = fit(cfg, datamodule_from_config(cfg), callbacks=callbacks)
    if settings is not None and rank_zero_only.rank == 0:
        add_learned_costs(out, settings, progress=cfg.trainer.enable_progress_bar)
    return out


def learned_cost_settings(cfg: DictConfig) -> CostTrainingSettings | None:
    """The learned cost a training config asks for (None for ``learned_cost=none``)."""
    if cfg.learned_cost.kind == "none":
        return None
    try:
        return CostTrainingSettings.from_config(to_dict(cfg.learned_cost))
    except ValueError as error:
        raise ConfigError(f"learned_cost settings: {error}") from error


def add_learned_costs(run: Path, settings: CostTrainingSettings, progress: bool = True) -> None:
    """Train the learned cost into ``last.ckpt`` and ``best.ckpt`` of a finished run, where it is not there yet
    with these settings."""
    from jepa_wm.checkpoint import read_checkpoint

    trained = None  # (weights, cost) of the checkpoint a cost was trained for here: best.ckpt is often last.ckpt
    for name in ("last.ckpt", "best.ckpt"):
        path = run / "checkpoints" / name
        if not path.is_file():
            continue
        checkpoint = read_checkpoint(path)
        if stored_with(checkpoint.get("learned_cost"), settings):
            continue
        if trained is not None and _same_weights(trained[0], checkpoint["state_dict"]):
            checkpoint["learned_cost"] = trained[1]
            save_torch_atomic(path, checkpoint)
            continue
        train_cost_for_checkpoint(path, settings, progress=progress)
        trained = (checkpoint["state_dict"], read_checkpoint(path)["learned_cost"])


def _same_weights(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def trained_steps(checkpoint: Path) -> int:
    """How many optimisation steps a checkpoint has seen (0 if there is none)."""
    return int(read_checkpoint(checkpoint).get("global_step", 0)) if checkpoint.is_file() else 0


def collect_stage(env_cfg, out: Path, overrides=(), seed: int = 0, workers: int = 2, progress: bool = True) -> Path:
    """Collect (or finish collecting) a dataset of ``env_cfg``'s task into ``out``; a finished one is kept."""
    env_overrides = [f"env.{key}={'null' if value is None else value}" for key, value in to_dict(env_cfg).items()]
    cfg = compose("collect", [f"env={env_cfg['name']}", *env_overrides, f"out={out}", f"workers={workers}",
                              f"seed={seed}", f"progress={str(progress).lower()}", *overrides])
    return collect_from_config(cfg)


def train_stage(dataset: Path, run_dir: Path, overrides=(), seed: int = 0) -> Path:
    """Train (or resume) a world model until ``trainer.max_steps``; a finished run is reused. Returns last.ckpt."""
    arguments = [f"data.path={dataset}", f"out={run_dir}", f"seed={seed}", *overrides]
    cfg = train_config(arguments)
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    done = trained_steps(checkpoint)
    if done:
        check_reusable(checkpoint, cfg)
    if done < cfg.trainer.max_steps:
        train_from_config(train_config([*arguments, "resume=true"]) if done else cfg)
    else:
        settings = learned_cost_settings(cfg)
        if settings is not None:  # a run finished before its learned cost was (or with other cost settings)
            add_learned_costs(run_dir, settings, progress=False)
    return checkpoint


# What a run reused by a later stage must have been trained with, as the stage asks now: the model, its data
# and seed. (Trainer settings, the step count and the learned cost are applied to the run as it stands.)
def _reuse_relevant(flat: dict) -> dict:
    return {key: value for key, value in flat.items()
            if key == "seed" or key.startswith("model.") or key.startswith("data.") and key not in ("data.path", "data.num_workers")}


def check_reusable(checkpoint: Path, cfg: DictConfig) -> None:
    """Refuse to reuse (or continue) a run trained with other model, data or seed settings than ``cfg``: it would
    plan with a model that is not the one asked for."""
    from jepa_wm.training import flatten

    before = _reuse_relevant(flatten(read_checkpoint(checkpoint)["hyper_parameters"].get("run_config") or {}))
    after = _reuse_relevant(flatten(to_dict(cfg)))
    # Keys one side lacks are settings of another version of jepa-wm, not a choice made here.
    changed = sorted(key for key in set(before) & set(after) if before[key] != after[key])
    if changed:
        details = "; ".join(f"{key}: {before.get(key)!r} -> {after.get(key)!r}" for key in changed[:4])
        raise ConfigError(f"{checkpoint.parent.parent} holds a model trained with other settings ({details}); pass "
                          f"fresh=true to train it anew, or choose another out=")


def run_quickstart(cfg: DictConfig) -> dict:
    """Collect, train and plan with the sizes of ``configs/quickstart.yaml``; finished stages are reused.

    Returns the planning result (rows, table, files) plus the dataset and checkpoint paths.
    """
    size = cfg.full_size if cfg.full else cfg.small
    out = Path(cfg.out)
    dataset, run_dir = out / "dataset", out / "train"
    if cfg.fresh:  # each stage's own files, and only if nothing else is among them
        remove_own_directories({dataset: DATASET_FILES, run_dir: RUN_FILES, out / "plan": PLAN_FILES}, "fresh=true")

    done = collected_episodes(dataset)
    print(f"[1/3] reusing the dataset in {dataset} ({done} episodes)" if done >= size.collect.episodes else
          f"[1/3] collecting {size.collect.episodes} {cfg.env.name} episodes into {dataset}")
    collect_stage(cfg.env, dataset, as_overrides(size.collect), cfg.seed, cfg.workers, progress=cfg.progress)

    train_overrides = [*as_overrides(size.train), f"trainer.enable_progress_bar={str(cfg.progress).lower()}"]
    steps, done = size.train.trainer.max_steps, trained_steps(run_dir / "checkpoints" / "last.ckpt")
    print(f"[2/3] reusing the world model trained in {run_dir} (step {done})" if done >= steps else
          f"[2/3] training a world model for {steps} steps into {run_dir}" + (f" (from step {done})" if done else ""))
    checkpoint = train_stage(dataset, run_dir, train_overrides, cfg.seed).parent / size.checkpoint

    plan_cfg = compose("plan", [f"checkpoint={checkpoint}", "baselines=true", f"seed={cfg.seed}",
                                f"out={out / 'plan'}", f"progress={str(cfg.progress).lower()}", *as_overrides(size.plan)])
    result = finished_report(plan_cfg, out / "plan")
    if result is not None:
        print(f"[3/3] reusing the planning report in {out / 'plan'} (fresh=true plans again)")
    else:
        print(f"[3/3] planning on {size.plan.episodes} goal-reaching episodes: ours, random and oracle")
        result = run_plan(plan_cfg)
    result["files"] = {"dataset": dataset, "checkpoint": checkpoint, **result["files"]}
    return result


def collected_episodes(dataset: Path) -> int:
    """How many episodes a dataset's manifest lists as finished (0 where there is none yet)."""
    from jepa_wm.data.storage import load_manifest

    try:
        shards = load_manifest(dataset)["shards"]
        return sum(last - first for first, last in (record["episodes"] for record in shards.values()))
    except Exception:  # noqa: BLE001 - no dataset, or one collect will refuse with its own words
        return 0


# ------------------------------------------------------------------------------------------ learned costs
@dataclass
class EmbeddedEpisodes:
    """Whole episodes of a dataset as a world model sees them: ``goals`` (E, T+1, F) through the target encoder
    (the space goals are embedded in), ``history`` (E, T+1, F) through the encoder (what the predictor reads),
    the goal coordinates of the frames (E, T+1, C) and the actions (E, T, A_env) in [-1, 1]."""

    goals: torch.Tensor
    history: torch.Tensor
    coordinates: torch.Tensor
    actions: torch.Tensor


def embed_episodes(model, store, episode_ids, batch_episodes: int = 4) -> EmbeddedEpisodes:
    frames = store.steps_per_episode + 1
    parts: dict[str, list] = {"goals": [], "history": [], "coordinates": [], "actions": []}
    for first in range(0, len(episode_ids), batch_episodes):
        chunk = np.asarray(episode_ids[first:first + batch_episodes])
        windows = store.read_windows(chunk, np.zeros(len(chunk), np.int64), frames)
        obs = torch.as_tensor(windows["obs"]).to(model.device)
        with torch.no_grad():
            goals = model.encode_target(obs).flatten(2).float().cpu()  # (B, T+1, N*D)
            history = goals if model.target_encoder is None else model.encode(obs).flatten(2).float().cpu()
        parts["goals"].append(goals)
        parts["history"].append(history)
        parts["coordinates"].append(torch.as_tensor(windows["position"]))
        parts["actions"].append(torch.as_tensor(windows["actions"]))
    return EmbeddedEpisodes(**{name: torch.cat(values) for name, values in parts.items()})


def recorded_dataset(model, checkpoint: Path) -> Path | list[Path]:
    """The dataset a checkpoint says its model was trained on (a list for several datasets). Runs before this
    version recorded the path as given (relative to where training ran): it is looked for from here, then from
    the checkpoint's folders up."""
    recorded = model.hparams["env"].get("dataset")
    if not recorded:
        raise ConfigError(f"{checkpoint} does not record its dataset; pass data.path=DATASET")
    found = []
    for path in map(Path, [recorded] if isinstance(recorded, str) else recorded):
        bases = [base for base in (Path.cwd(), *Path(checkpoint).resolve().parents) if (base / path).is_dir()]
        if not bases:
            raise ConfigError(f"{checkpoint} was trained on {path}, which is not here; pass data.path=DATASET")
        found.append(bases[0] / path)
    return found[0] if isinstance(recorded, str) else found


def train_into_checkpoint(path, key: str, build, dataset=None, out=None, progress: bool = True,
                          save_every: int = 500) -> dict:
    """Train a head for the world model in checkpoint ``path`` on the dataset it was trained on (or ``dataset``)
    and store it in the checkpoint under ``key`` (``out``: another file; written atomically).

    ``build(model, store, train_ids, val_ids)`` returns ``(trainer, steps, what, finish)``: a trainer (``step``,
    ``train(until, progress)``, ``state_dict()``, ``load_state_dict()``), its number of steps, a name for the
    progress bar, and ``finish(trainer) -> (checkpoint entry, metrics)``. The head learns from the train split of
    the world model's own episode split; ``finish`` may measure it on the held-out episodes. Every ``save_every``
    steps the trainer's state is saved beside the output (``.<name>.<key>-state``), so a killed training resumes
    where it stopped. Returns the metrics.
    """
    from jepa_wm.checkpoint import model_from_checkpoint, read_checkpoint
    from jepa_wm.data.dataset import load_episodes, split_episodes

    path = checkpoint_to_extend(path, out)
    target = Path(out) if out else path
    check_output_directory(target.parent, "out")
    read_checkpoint(path)  # a missing or damaged checkpoint is named before anything is created
    target.parent.mkdir(parents=True, exist_ok=True)
    run_directory = target.parent.parent if target.parent.name == "checkpoints" else target.parent
    # Read under the lock what is written under it: another head trained into the same checkpoint meanwhile is kept.
    with DirectoryLock(run_directory, "a checkpoint"):
        checkpoint = read_checkpoint(path)
        if target != path and (target.exists() or target.is_symlink()):
            checkpoint = _checkpoint_to_extend(target, checkpoint)
        model = model_from_checkpoint(checkpoint, path).eval().requires_grad_(False)
        store = load_episodes(dataset or recorded_dataset(model, path), model.cfg["obs_type"])
        check_same_task(model, store, dataset)
        run = model.hparams.get("run_config") or {}
        train_ids, val_ids = split_episodes(store.num_episodes, run.get("data", {}).get("val_fraction", 0.1),
                                            run.get("seed", 0))
        if not len(train_ids) or not len(val_ids):
            raise ConfigError(f"{store.path} has {store.num_episodes} episode(s) for the world model's train/held-out "
                              f"split: a head needs episodes on both sides (one to learn from, one to measure it); "
                              f"collect more episodes")
        state_path = target.with_name(f".{target.name}.{key}-state")
        trainer, steps, what, finish = _built_head(build, model, store, train_ids, val_ids)
        if state_path.is_file() and not _resume_head_training(trainer, state_path, checkpoint.get("global_step")):
            trainer, steps, what, finish = build(model, store, train_ids, val_ids)  # a clean start, not a half-loaded one
        bar = tqdm(total=steps, initial=trainer.step, desc=what, unit="step", disable=not progress)

        def save_state() -> None:
            save_torch_atomic(state_path, {**trainer.state_dict(), "world_model_step": checkpoint.get("global_step")})

        def advance(step: int, loss: float) -> None:
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
            if save_every and step % save_every == 0 and step < steps:
                save_state()
            stops.check()

        with StepBoundaryStops() as stops:
            try:
                trainer.train(steps, advance)
            except (KeyboardInterrupt, TrainingTerminated) as stop:
                bar.close()
                if stops.at_boundary:  # a finished step: keep it
                    save_state()
                saved = int(torch.load(state_path, weights_only=True)["step"]) if state_path.is_file() else 0
                how = (f"{what} stopped at step {trainer.step} of {steps}; "
                       + (f"step {saved} is saved: " if saved else "nothing was saved: ")
                       + "rerun the same command to continue")
                raise type(stop)(f"{stop}; {how}" if isinstance(stop, TrainingTerminated) else how) from None
            finally:
                bar.close()
        checkpoint[key], metrics = finish(trainer)
        save_torch_atomic(target, checkpoint)
        state_path.unlink(missing_ok=True)
    return metrics


def checkpoint_to_extend(reference, out) -> Path:
    """The checkpoint file a head is trained for: a path, or a reference (``pretrained:NAME``, ``hf:``,
    ``wandb:``) fetched first; a reference's file (shipped, or a download cache) is never written to: it needs
    ``out=``."""
    from jepa_wm.references import is_reference, reference_name, resolve_checkpoint

    text = str(reference)
    if not is_reference(text):
        return Path(reference)
    if not out:
        name = reference_name(text) or "model"
        raise ConfigError(f"checkpoint={text} is not a file of yours to write into: pass out=FILE, e.g. "
                          f"out=runs/policies/{name}.ckpt (a copy with the head)")
    return resolve_checkpoint(text)


def _built_head(build, model, store, train_ids, val_ids):
    """``build``'s trainer, or one line saying why this data cannot train the head (episodes too short for the
    policy's horizon, settings the trainer refuses)."""
    try:
        return build(model, store, train_ids, val_ids)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(f"{store.path} cannot train this head: {error}") from None


def _resume_head_training(trainer, state_path: Path, world_model_step) -> bool:
    """Load a killed head training's saved state into ``trainer``; False when it cannot be resumed (another world
    model step, other settings, or a damaged file), and the head's training starts again."""
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("world_model_step") != world_model_step:
            return False
        trainer.load_state_dict(state)
        return True
    except ValueError:  # started with other settings
        return False
    except Exception as error:  # a damaged or foreign state file: only progress is lost, so start again
        print(f"note: {state_path} cannot be resumed from ({type(error).__name__}); training the head from the start",
              file=sys.stderr)
        return False


def _checkpoint_to_extend(target: Path, checkpoint: dict) -> dict:
    """``out=`` that exists already: it is replaced only if it is a checkpoint of this very world model (its other
    heads are kept); anything else is left as it is."""
    from jepa_wm.checkpoint import CheckpointError

    try:
        existing = read_checkpoint(target) if target.is_file() and not target.is_symlink() else None
    except CheckpointError:
        existing = None
    if existing is None or not _same_weights(existing.get("state_dict") or {}, checkpoint["state_dict"]):
        raise ConfigError(f"out={target} exists and is not a checkpoint of this world model; it is left as it is: "
                          f"pass a new file name, or the checkpoint itself (drop out=)")
    return existing


def check_same_task(model, store, dataset) -> None:
    """A head learns from the episodes of its world model's task: data of another task (another env, action
    size or observation) would train it on what the model never saw."""
    if dataset is None:
        return
    trained, given = model.hparams["env"].get("config") or {}, store.manifest["env"]
    keys = [key for key in ("domain", "task", "action_repeat", "image_size", "camera_id") if trained.get(key) != given.get(key)]
    if keys:
        details = ", ".join(f"{key} {given.get(key)!r} (model: {trained.get(key)!r})" for key in keys)
        raise ConfigError(f"data.path={dataset} is not data of the world model's task ({details}); pass a dataset "
                          f"of the same task, or drop data.path to use the one the model was trained on")


def train_cost_for_checkpoint(path, settings: CostTrainingSettings, dataset=None, out=None,
                              progress: bool = True, save_every: int = 500) -> dict:
    """Train a learned planning cost into a checkpoint (see ``train_into_checkpoint``); returns its metrics: rank
    correlations of the learned and of the latent distance with the true one, on held-out episodes."""
    def build(model, store, train_ids, val_ids):
        trainer, periods, names = learned_cost_trainer(model, store, embed_episodes(model, store, train_ids), settings)

        def finish(trainer):
            held_out = embed_episodes(model, store, val_ids)
            cost = trainer.result(held_out.goals, held_out.coordinates)
            if periods is not None:  # how well the probe reads the success coordinates from an encoding
                cost.metrics["probe_r2"] = trainer.decoding_r2(held_out.goals, held_out.coordinates, periods)
                by_coordinate = trainer.decoding_r2(held_out.goals, held_out.coordinates, periods, by_coordinate=True)
                cost.metrics.update({f"probe_r2/{name}": r2 for name, r2 in zip(names, by_coordinate)})
                for steps, r2 in enumerate(probe_r2_over_horizon(model, trainer, held_out, periods), start=1):
                    cost.metrics[f"probe_r2_predicted_{steps}"] = r2
            return cost.to_checkpoint(), cost.metrics

        return trainer, settings.steps, f"learned cost ({settings.kind})", finish

    return train_into_checkpoint(path, "learned_cost", build, dataset, out, progress, save_every)


def learned_cost_trainer(model, store, training: EmbeddedEpisodes, settings: CostTrainingSettings):
    """The trainer of a learned cost on a world model's embedded training episodes, as every command trains one: a
    kind that reads the task's success coordinates (decoded) gets them as targets, and with ``predicted_steps`` the
    model's own predictions too. Returns it with the coordinates' periods and names (None for other kinds)."""
    periods, names = (success_coordinates(store) if getattr(HEADS[settings.kind], "needs_targets", False)
                      else (None, None))
    targets = None if periods is None else success_targets(training.coordinates, periods)
    predictions = None
    if getattr(settings, "predicted_steps", 0):  # the probe also fits what planning decodes: predictions
        drawn = [predicted_embeddings(model, training, steps, PROBE_PREDICTIONS, seed=settings.seed + steps)
                 for steps in range(1, settings.predicted_steps + 1)]
        predicted, coordinates = zip(*drawn)
        predictions = torch.cat(predicted), success_targets(torch.cat(coordinates), periods)
    return CostTrainer(training.goals, settings, targets, predictions), periods, names


PROBE_PREDICTIONS = 4096  # predicted embeddings per horizon a decoded cost's probe fits (``predicted_steps``)


def predicted_embeddings(model, episodes: EmbeddedEpisodes, steps: int, count: int, seed: int = 0):
    """``count`` predictions of the world model ``steps`` model steps ahead (open loop from true history frames,
    with the episode's own actions), flattened (count, F), and the true goal coordinates (count, C) there."""
    def sample(goals):  # the same draws for embeddings and coordinates
        return relabelled_examples(episodes.history, goals, episodes.actions, count, model.history, steps,
                                   model.frameskip, torch.Generator().manual_seed(seed), goal="block")

    examples, truth = sample(episodes.goals), sample(episodes.coordinates).goal
    z_history = examples.z_history.reshape(count, model.history, model.num_tokens, model.embed_dim)
    with torch.no_grad():
        predicted = model.rollout(z_history.to(model.device), examples.actions.to(model.device),
                                  examples.past_actions.to(model.device))[:, -1].flatten(1).float().cpu()
    return predicted, truth


def probe_r2_over_horizon(model, trainer, episodes: EmbeddedEpisodes, periods, horizons: int = 5, count: int = 512,
                          seed: int = 0) -> list[float]:
    """R^2 of a decoded cost's probe on the world model's predictions 1..``horizons`` model steps ahead against
    the true success coordinates there: how much of what success measures prediction keeps, step by step."""
    horizons = min(horizons, (episodes.history.shape[1] - 2) // model.frameskip)
    scores = []
    for steps in range(1, horizons + 1):
        predicted, truth = predicted_embeddings(model, episodes, steps, count, seed)
        scores.append(trainer.decoding_r2(predicted[None], truth[None], periods))
    return scores


def success_coordinates(store) -> tuple[np.ndarray, list[str]]:
    """The period of each success coordinate of a dataset's task (0: not an angle; what a decoded cost reads as the
    sin and cos of its turn, see ``success_targets``), and their names."""
    from jepa_wm.data.envs import make_env

    env = make_env(store.manifest["env"])
    try:
        return env.angle_periods, env.coordinate_names
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------- policies
def train_policy_for_checkpoint(path, settings: PolicySettings, dataset=None, out=None, progress: bool = True,
                                save_every: int = 500, horizon: int | None = None) -> dict:
    """Train a goal-conditioned policy into a checkpoint (see ``train_into_checkpoint``) on hindsight-relabelled
    examples of the world model's training episodes: the data's own actions (``gcbc``) or the planner's plans
    from the same states (``distill``). It proposes ``horizon`` model actions (the plan config's horizon).
    Returns its held-out error beside that of proposing zero."""
    horizon = horizon or compose("plan").mpc.horizon

    def build(model, store, train_ids, val_ids):
        generator = torch.Generator().manual_seed(settings.seed)

        def examples(episodes, count):
            return relabelled_examples(episodes.history, episodes.goals, episodes.actions, count, model.history,
                                       horizon, model.frameskip, generator, settings.goal)

        training = examples(embed_episodes(model, store, train_ids), settings.labels)
        held_out = examples(embed_episodes(model, store, val_ids), max(64, settings.labels // 10))
        kind = POLICY_TARGETS[settings.kind]  # where the targets come from: the data's actions, the planner's plans
        if kind.held_out_limit:  # targets that cost a planner call each: a smaller held-out set
            count = min(len(held_out.goal), kind.held_out_limit)
            held_out = type(held_out)(held_out.z_history[:count], held_out.goal[:count], held_out.actions[:count],
                                      held_out.past_actions[:count])
        training.actions = kind.targets(model, training, settings, progress, seed=settings.seed)
        held_out.actions = kind.targets(model, held_out, settings, progress, seed=settings.seed + 1)

        def finish(trainer):
            policy = trainer.result(held_out)
            return policy.to_checkpoint(), policy.metrics

        return PolicyTrainer(training, settings), settings.steps, f"policy ({settings.kind})", finish

    return train_into_checkpoint(path, "policy", build, dataset, out, progress, save_every)


def head_training() -> dict:
    """How each family of heads trains into a checkpoint (``key -> train_*_for_checkpoint``)."""
    return {"learned_cost": train_cost_for_checkpoint, "policy": train_policy_for_checkpoint}


def train_head_from_config(key: str, cfg: DictConfig) -> dict:
    """What ``jepa-wm train-cost`` / ``train-policy`` do, from their config: the head of family ``key`` (its kind
    and settings in the config's section of that family's group) trained into ``cfg.checkpoint``."""
    from jepa_wm.heads import FAMILIES

    family = FAMILIES[key]
    section = cfg[family.group]
    if section.kind not in family.kinds:
        raise ConfigError(f"{family.group}={section.kind} trains nothing; choose {family.group}="
                          + " | ".join(family.kinds.names()))
    try:
        settings = family.settings.from_config(to_dict(section))
    except ValueError as error:
        raise ConfigError(f"{family.group} settings: {error}") from error
    return head_training()[key](cfg.checkpoint, settings, cfg.data.path, cfg.out, cfg.progress)


# ------------------------------------------------------------------------------------------- shipped models
def golden_readings(model, seed: int = 0) -> dict:
    """What a shipped model computes on one fixed input, recorded on its card when it ships: the target
    embedding of the first dev episode's start and goal observations of its own task, the embedding a
    5-step rollout predicts from the start under fixed actions, and the learned distance between start and
    goal (when it has a learned cost). A change anywhere on the way (observation scaling, an encoder, the
    predictor, a cost head) changes these numbers: the test of the shipped models compares them."""
    from jepa_wm.data.envs import make_env
    from jepa_wm.planning.experiment import planning_env_settings
    from jepa_wm.seeds import evaluation_seed

    env = make_env(planning_env_settings(None, model))
    try:
        observation, _ = env.reset(seed=evaluation_seed(seed, 0, "dev"))
        start = torch.as_tensor(observation[model.cfg["obs_type"]])[None, None]
        goal = torch.as_tensor(env.goal_obs()[model.cfg["obs_type"]])[None, None]
    finally:
        env.close()
    actions = torch.linspace(-1, 1, 5 * model.action_dim).reshape(1, 5, model.action_dim).to(model.device)
    with torch.no_grad():
        z_start, z_goal = model.encode_target(start)[0, 0], model.encode_target(goal)[0, 0]
        history = model.encode(start).expand(1, model.history, -1, -1)
        predicted = model.rollout(history, actions)[0, -1]
        readings = {"start_embedding": z_start.flatten()[:8].tolist(), "goal_embedding": z_goal.flatten()[:8].tolist(),
                    "predicted_embedding": predicted.flatten()[:8].tolist()}
        if model.learned_cost is not None:
            readings["learned_distance"] = float(model.learned_cost.distance(z_start.flatten(), z_goal.flatten()))
    return readings
