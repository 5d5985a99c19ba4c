"""Pretrained models: shipped by name, torch.hub, the Hugging Face Hub, and refusal of old formats."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import jepa_wm.checkpoint
import jepa_wm.hub
import jepa_wm.references
from jepa_wm import CheckpointError, load_world_model
from jepa_wm.checkpoint import export_weights, read_checkpoint
from jepa_wm.references import file_sha256
from tests.test_evaluation import save_model_checkpoint, tiny_pixel_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A zoo directory holding one tiny model, 'reacher-easy', with its card."""
    directory = tmp_path / "pretrained"
    directory.mkdir()
    model = tiny_pixel_model()
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "global_step": 7,
                  "optimizer_states": [{"huge": torch.zeros(1000)}]}
    export_weights(checkpoint, directory / "reacher-easy.ckpt")
    card = {"task": "reacher-easy", "training_steps": 7, "test_success": {"rate": 0.5, "ci95": [0.2, 0.8], "episodes": 10},
            "weights_sha256": file_sha256(directory / "reacher-easy.ckpt")}
    (directory / "reacher-easy.json").write_text(json.dumps(card))
    monkeypatch.setattr(jepa_wm.references, "PRETRAINED_DIR", directory)
    return directory


def test_shipped_models_load_by_name_and_unknown_names_get_the_nearest(zoo):
    model = load_world_model("pretrained:reacher-easy")
    obs = torch.randint(0, 256, (1, 1, 64, 64, 3), dtype=torch.uint8)
    assert model.encode(obs).shape[-1] == 8 and not model.training
    with pytest.raises(CheckpointError, match="no pretrained model 'reacher-esy'; did you mean 'reacher-easy'"):
        load_world_model("pretrained:reacher-esy")
    with pytest.raises(CheckpointError, match=r"pretrained:reacher-easy +50% +\[20%, 80%\] +- +-  10, reacher-easy data, 7"):
        load_world_model("pretrained:")


def test_exported_weights_hold_no_optimizer_state(zoo):
    checkpoint = read_checkpoint(zoo / "reacher-easy.ckpt")
    assert set(checkpoint) == {"state_dict", "hyper_parameters", "global_step"}


def test_a_shipped_model_of_an_older_format_says_how_to_rebuild_the_zoo(zoo):
    checkpoint = torch.load(zoo / "reacher-easy.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["format"] = "jepa-wm/1"
    torch.save(checkpoint, zoo / "reacher-easy.ckpt")
    card = json.loads((zoo / "reacher-easy.json").read_text())  # shipped as it was, with its own card
    (zoo / "reacher-easy.json").write_text(json.dumps({**card, "weights_sha256": file_sha256(zoo / "reacher-easy.ckpt")}))
    with pytest.raises(CheckpointError, match=r"format jepa-wm/1, but this version reads jepa-wm/3; rebuild the "
                                              r"shipped models with python benchmarks/zoo.py"):
        load_world_model("pretrained:reacher-easy")


def test_torch_hub_loads_a_shipped_model_from_a_local_clone(zoo, tmp_path):
    clone = tmp_path / "clone"
    shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns(".git", ".venv", ".ci-venv", "runs", "datasets", "wandb"))
    target = clone / "jepa_wm" / "pretrained"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(zoo, target)
    code = ("import torch; m = torch.hub.load('.', 'reacher_easy', source='local'); print(type(m).__name__, m.training);"
            "import hubconf; print([name for name in dir(hubconf) if callable(getattr(hubconf, name)) and name[0] != '_' "
            "and name != 'pretrained_names'])")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "['reacher_easy']" in result.stdout and "WorldModel False" in result.stdout


def hub_cache_with(tmp_path, repo: str, files: dict) -> Path:
    """A Hugging Face cache laid out as huggingface_hub writes it, holding ``files`` of ``repo`` at main."""
    cache = tmp_path / "hf-cache"
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)
    (cache / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (cache / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("0" * 40)
    return cache


def test_hugging_face_references_load_from_the_local_cache_offline(tmp_path, monkeypatch):
    model = tiny_pixel_model()
    path = save_model_checkpoint(model, tmp_path / "model.ckpt")
    cache = hub_cache_with(tmp_path, "someone/jepa-reacher", {"model.ckpt": path})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    loaded = load_world_model("hf:someone/jepa-reacher")
    obs = torch.randint(0, 256, (1, 1, 64, 64, 3), dtype=torch.uint8)
    assert torch.equal(loaded.encode(obs), model.encode(obs))
    with pytest.raises(CheckpointError, match="cannot get model.ckpt of Hugging Face repository 'someone/other'"):
        load_world_model("hf:someone/other")
    with pytest.raises(CheckpointError, match="not a Hugging Face model reference"):
        load_world_model("hf:no-owner")


def test_a_pickled_file_on_the_hub_is_never_unpickled(tmp_path, monkeypatch, capsys):
    from tests.test_module import _Payload

    unsafe = tmp_path / "model.ckpt"
    torch.save({"payload": _Payload()}, unsafe)
    cache = hub_cache_with(tmp_path, "stranger/model", {"model.ckpt": unsafe})
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    with pytest.raises(CheckpointError, match="pickled code could run"):
        load_world_model("hf:stranger/model")
    assert "this must never run" not in capsys.readouterr().out


def test_upload_sends_weights_a_card_and_a_readme_to_the_repository(zoo, monkeypatch):
    uploads = []

    class RecordingApi:
        def create_repo(self, repo, **kwargs):
            uploads.append(("create", repo, kwargs["exist_ok"]))

        def upload_folder(self, repo_id, folder_path, **kwargs):
            files = sorted(path.name for path in Path(folder_path).iterdir())
            checkpoint = torch.load(Path(folder_path) / "model.ckpt", weights_only=True)
            readme = (Path(folder_path) / "README.md").read_text()
            uploads.append(("upload", repo_id, files, sorted(checkpoint), "hf:me/reacher" in readme))

    monkeypatch.setattr("huggingface_hub.HfApi", RecordingApi)
    url = jepa_wm.hub.upload_checkpoint("pretrained:reacher-easy", "me/reacher")
    assert url == "https://huggingface.co/me/reacher"
    assert uploads == [("create", "me/reacher", True),
                       ("upload", "me/reacher", ["README.md", "card.json", "model.ckpt"],
                        ["global_step", "hyper_parameters", "state_dict"], True)]


SHIPPED = jepa_wm.references.pretrained_names()


def test_every_benchmark_task_has_a_shipped_model():
    """One per task of the suite, reacher-easy (the README's first command) among them."""
    from jepa_wm.config import compose

    tasks = list(compose("suite").tasks)
    assert "reacher-easy" in tasks and sorted(tasks) == SHIPPED, f"rebuild the zoo: {jepa_wm.references.REBUILD_ZOO}"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_loads_and_plans_an_episode_in_its_own_task(name, tmp_path):
    from jepa_wm.planning.experiment import run_plan

    from jepa_wm.config import compose

    card = jepa_wm.references.pretrained_card(name)
    path = jepa_wm.references.PRETRAINED_DIR / f"{name}.ckpt"
    assert path.stat().st_size <= 5 * 1024 * 1024 and card["size_bytes"] == path.stat().st_size
    assert "optimizer_states" not in torch.load(path, map_location="cpu", weights_only=True)
    result = run_plan(compose("plan", [f"checkpoint=pretrained:{name}", "episodes=1", f"out={tmp_path}",
                                       "planner.samples=16", "planner.elites=4", "planner.iterations=1", "videos=0",
                                       "progress=false", "env.episode_length=3"]))
    (row,) = result["rows"]
    assert row["env"] == card["task"] == name and row["episodes"] == 1


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_computes_what_it_computed_when_it_shipped(name):
    """The embeddings, prediction and learned distance on one fixed input, against the card's: a change in
    observation scaling, an encoder, the predictor or a cost head that would ruin the shipped models fails here."""
    from jepa_wm.pipeline import golden_readings

    golden = jepa_wm.references.pretrained_card(name)["golden"]
    now = golden_readings(load_world_model(f"pretrained:{name}"))
    assert now.keys() == golden.keys()
    for key, value in golden.items():
        assert now[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_a_shipped_model_reaches_its_goals_where_random_actions_do_not(tmp_path):
    """Planning success itself, not only that planning runs: pretrained:reacher-offset25 (100% of 50 test episodes
    on its card, random 4%) with the default planner on the first 6 of those episodes."""
    from jepa_wm.planning.experiment import run_plan

    from jepa_wm.config import compose

    result = run_plan(compose("plan", ["checkpoint=pretrained:reacher-offset25", "episodes=6", "split=test",
                                       "baselines=true", "methods=[ours,random]", f"out={tmp_path}", "videos=0",
                                       "progress=false"]))
    rows = {row["method"]: row for row in result["rows"]}
    assert sum(rows["ours"]["reached"]) >= 5, rows["ours"]
    assert sum(rows["random"]["reached"]) <= 1, rows["random"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_carries_the_planning_cost_its_task_trains_with_and_its_card_says_which(name):
    """A task whose env config asks for another learned cost than the default (the decoded cost of point_mass-easy
    and hopper-stand), or plans with it alone (planning_cost), plans so: the shipped model must have been
    re-exported with both inside."""
    from jepa_wm.config import compose, load_group

    task_overrides = dict(item.split("=", 1) for item in load_group("env", name).get("train_overrides") or [])
    expected = task_overrides.get("learned_cost") or compose("train", ["data.path=x"]).learned_cost.kind
    checkpoint = torch.load(jepa_wm.references.PRETRAINED_DIR / f"{name}.ckpt", map_location="cpu", weights_only=True)
    shipped = (checkpoint.get("learned_cost") or {}).get("kind", "none")
    assert shipped == jepa_wm.references.pretrained_card(name)["learned_cost"] == expected, \
        f"rebuild the zoo: {jepa_wm.references.REBUILD_ZOO}"
    # and how its task plans with it (the env config's planning_cost), inside the checkpoint and on the card
    planning_cost = dict(load_group("env", name).get("planning_cost") or {})
    assert (checkpoint["hyper_parameters"]["env"]["config"].get("planning_cost") or {}) == planning_cost, \
        f"rebuild the zoo: {jepa_wm.references.REBUILD_ZOO}"
    card_says = jepa_wm.references.pretrained_card(name).get("planning_cost", "sum")  # the only way before the key
    assert card_says == planning_cost.get(shipped, "sum"), \
        f"rebuild the zoo: {jepa_wm.references.REBUILD_ZOO}"
