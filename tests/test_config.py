"""Config composition: groups, overrides, and errors that name the valid choice."""

import subprocess
import sys
from pathlib import Path

import pytest

from jepa_wm.config import ConfigError, compose

ROOT = Path(__file__).resolve().parents[1]


def test_group_selection_and_dotted_overrides():
    cfg = compose("collect", ["env=reacher-hard", "episodes=3", "--env.image_size=32"])
    assert cfg.env.name == "reacher-hard" and cfg.episodes == 3 and cfg.env.image_size == 32


def test_group_file_inherits_from_its_base():
    cfg = compose("train", ["data.path=x", "model=state"])
    assert cfg.model.obs_type == "state" and cfg.model.encoder.name == "mlp"
    assert cfg.model.predictor.name == "mlp" and "base" not in cfg.model


def test_plus_adds_a_key_the_file_does_not_list():
    cfg = compose("train", ["data.path=x", "+trainer.accumulate_grad_batches=2"])
    assert cfg.trainer.accumulate_grad_batches == 2


def test_unknown_key_names_the_nearest_valid_key():
    with pytest.raises(ConfigError, match="unknown config key 'model.encoder.embed_dimm'; did you mean 'model.encoder.embed_dim'"):
        compose("train", ["model.encoder.embed_dimm=3"])


def test_unknown_group_choice_lists_the_choices():
    with pytest.raises(ConfigError, match=r"unknown env 'reacher-esy'; did you mean 'reacher-easy'\? \(choices: point_mass-easy"):
        compose("collect", ["env=reacher-esy"])


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        compose("collect", ["episodes"])


def test_scripts_print_config_errors_without_a_traceback():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "collect.py"), "episodez=3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "error: unknown config key 'episodez'; did you mean 'episodes'?" in result.stderr
    assert "Traceback" not in result.stderr
