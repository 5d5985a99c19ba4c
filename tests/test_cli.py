"""The jepa-wm command as a user meets it: installed anywhere, next to their own data/ and planning/, with --help."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jepa_wm.cli import COMMANDS, documented_keys, help_text

ROOT = Path(__file__).resolve().parents[1]


def project_of_a_user(tmp_path: Path) -> Path:
    """A directory as most ML projects have it: its own data/ and planning/ packages and a data.py."""
    home = tmp_path / "project"
    for package in ("data", "planning"):
        (home / package).mkdir(parents=True)
        (home / package / "__init__.py").write_text("MINE = True\n")
    (home / "data.py").write_text("raise ImportError('the user's data.py was imported')\n")
    return home


def run(command: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WANDB_MODE": "disabled", **env})


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_documents_its_keys_from_its_yaml(name):
    text = help_text(name)
    keys = [key for key, _, _ in documented_keys(Path(__import__("jepa_wm.config").config.CONFIG_DIR)
                                                 / f"{COMMANDS[name].config}.yaml")]
    assert keys and all(key in text for key in keys) and f"jepa-wm {name}" in text
    if name == "plan":
        assert "episodes=50" in text and "goal-reaching episodes per method" in text  # the YAML's own comment
        assert "choices: acrobot-swingup, cheetah-run" in text and "planner.samples=300" in text
        assert "keys of env/reacher-easy.yaml" in text  # a null group shows the quickstart's task, not the first file
        assert "pretrained:NAME" in text and "hf:OWNER/NAME" in text
    if name == "collect":
        assert "choices: distill" not in text  # its policy: is the collection policy, not the policy group


# Words a sentence does not end on: a comment that stops there was cut off.
DANGLING = ("within", "the", "of", "a", "an", "and", "or", "for", "with", "by", "at", "is", "its")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_comments_are_whole_sentences_in_one_aligned_column(name):
    text = help_text(name)
    keys = text.split("keys (", 1)[1].splitlines()[1:]
    columns = set()
    for line in keys:
        stripped = line.strip()
        if not stripped or stripped.startswith("choices:"):
            continue
        shown, _, comment = stripped.partition("  ")
        if comment.strip():
            columns.add(line.index(comment.strip()))
            assert not comment.strip().rstrip(",:").split()[-1] in DANGLING, line
        elif line.startswith(" " * 20):  # a comment on the line under a long key=value
            columns.add(len(line) - len(line.lstrip()))
    assert len(columns) == 1, (name, columns)


def test_usage_and_missing_checkpoint_name_every_way_in(tmp_path):
    from jepa_wm.cli import usage
    from jepa_wm.checkpoint import load_world_model
    from jepa_wm.errors import CheckpointError

    assert "HDF5" in usage()
    with pytest.raises(CheckpointError, match="pretrained:NAME.*hf:OWNER/NAME"):
        load_world_model(tmp_path / "missing.ckpt")


def test_print_config_of_a_plan_shows_the_checkpoints_task(tmp_path):
    result = run([sys.executable, "-m", "jepa_wm", "plan", "checkpoint=pretrained:reacher-easy", "env.episode_length=70",
                  "print_config=true"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "  name: reacher-easy" in result.stdout and "  episode_length: 70" in result.stdout


def test_the_command_plans_from_a_directory_with_its_own_data_and_planning(tmp_path):
    home = project_of_a_user(tmp_path)
    out = tmp_path / "plan"
    result = run([sys.executable, "-m", "jepa_wm", "plan", "checkpoint=pretrained:reacher-easy", "episodes=1",
                  "env.episode_length=4", "planner.iterations=1", "videos=0", "progress=false", f"out={out}"], home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ours" in result.stdout and (out / "report.json").is_file()
    helped = run(["jepa-wm", "plan", "--help"], home)
    assert helped.returncode == 0 and "checkpoint=null" in helped.stdout
    typo = run(["jepa-wm", "plna"], home)
    assert typo.returncode == 2 and "did you mean 'plan'" in typo.stderr


def test_print_config_prints_the_resolved_config_and_runs_nothing(tmp_path, reacher_pixel_dataset):
    out = tmp_path / "run"
    result = run([sys.executable, "-m", "jepa_wm", "train", f"data.path={reacher_pixel_dataset}", f"out={out}",
                  "model.history=2", "print_config=true"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "history: 2" in result.stdout and f"path: {reacher_pixel_dataset}" in result.stdout
    assert not out.exists()


def test_a_wheel_installs_everything_under_jepa_wm_and_runs_from_anywhere(tmp_path):
    """`pip install .` (not -e): configs and shipped models inside the package, no top-level data or planning."""
    wheels = tmp_path / "wheels"
    left_before = {name: (ROOT / name).exists() for name in ("build", "jepa_wm.egg-info")}
    built = run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                 "-w", str(wheels)], tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    assert {name: (ROOT / name).exists() for name in left_before} == left_before  # no build/ left in the tree
    wheel = next(wheels.glob("jepa_wm-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for member in ("jepa_wm/configs/plan.yaml", "jepa_wm/configs/env/reacher-easy.yaml", "jepa_wm/data/storage.py",
                   "jepa_wm/data/envs/goal_env.py", "jepa_wm/planning/planners.py", "jepa_wm/pretrained/reacher-easy.ckpt",
                   "jepa_wm/cli.py"):
        assert member in names, member
    assert not [name for name in names if name.split("/")[0] in ("data", "planning", "configs", "scripts", "tests")]
    assert any(name.endswith("entry_points.txt") for name in names)

    target = tmp_path / "installed"
    installed = run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                    tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    home = project_of_a_user(tmp_path)
    probe = ("import jepa_wm, jepa_wm.config, jepa_wm.planning.planners, jepa_wm.data.storage, data, planning; "
             "print(jepa_wm.__file__, jepa_wm.config.CONFIG_DIR, data.MINE, planning.MINE)")
    result = run([sys.executable, "-c", probe], home, PYTHONPATH=os.pathsep.join([str(target), str(home)]))
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(target / "jepa_wm") in result.stdout and str(target / "jepa_wm" / "configs") in result.stdout
    helped = run([sys.executable, "-m", "jepa_wm", "collect", "--help"], home, PYTHONPATH=str(target))
    assert helped.returncode == 0 and "steps_per_episode=100" in helped.stdout, helped.stderr[-2000:]


def test_convert_exports_to_stable_worldmodels_hdf5_and_back(tmp_path, reacher_pixel_dataset):
    from jepa_wm.data.dataset import load_episodes

    exported, back = tmp_path / "reacher.h5", tmp_path / "back"
    there = run([sys.executable, "-m", "jepa_wm", "convert", f"path={reacher_pixel_dataset}", f"out={exported}", "to=hdf5"],
                tmp_path)
    assert there.returncode == 0 and exported.is_file(), there.stderr[-2000:]
    again = run([sys.executable, "-m", "jepa_wm", "convert", f"path={exported}", f"out={back}", "from=hdf5"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    original, copy = load_episodes(reacher_pixel_dataset, "pixels"), load_episodes(back, "pixels")
    assert copy.num_episodes == original.num_episodes
    assert all((copy.episode(i)["obs"] == original.episode(i)["obs"]).all() for i in range(original.num_episodes))
    wrong = run([sys.executable, "-m", "jepa_wm", "convert", f"path={reacher_pixel_dataset}", "to=lance"], tmp_path)
    assert wrong.returncode == 2 and "to=lance is not a format" in wrong.stderr


def test_joints_lists_a_domains_qpos_indices_and_a_typo_gets_the_nearest_domain(tmp_path):
    listed = run([sys.executable, "-m", "jepa_wm", "joints", "domain=finger"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:] if line.strip()[:1].isdigit()]
    assert [(row[0], row[1], row[2]) for row in rows] == [("0", "proximal", "hinge"), ("1", "distal", "hinge"),
                                                          ("2", "hinge", "hinge")]  # finger-spin's 3 success joints
    # What a frame shows: spin hides the spinner's tip, so it looks the same after half a turn; turn_hard draws it.
    assert rows[2][-3:] == ["after", "1/2", "turn"] and rows[0][-3:] == ["a", "full", "turn"]
    shown = run([sys.executable, "-m", "jepa_wm", "joints", "domain=finger", "task=turn_hard"], tmp_path)
    assert shown.stdout.splitlines()[-2].split()[-3:] == ["a", "full", "turn"], shown.stdout
    typo = run([sys.executable, "-m", "jepa_wm", "joints", "domain=fingr"], tmp_path)
    assert typo.returncode == 2 and "did you mean 'finger'" in typo.stderr and "Traceback" not in typo.stderr


def test_the_readmes_python_api_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API in ten lines"):]
    code = section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 3)]
    assert "load_world_model" in code and "env.step" in code
    script = tmp_path / "api.py"
    script.write_text(code + "\nassert info['success'], info\nprint('reached', step)\n")
    result = run([sys.executable, str(script)], tmp_path)
    assert result.returncode == 0 and "reached" in result.stdout, result.stderr[-2000:]
