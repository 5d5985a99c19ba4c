"""Config composition: groups, overrides, and errors that name the valid choice."""

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf.errors import ConfigAttributeError

from jepa_wm.config import ConfigError, compose, load_group, to_dict

ROOT = Path(__file__).resolve().parents[1]


def test_collect_config_loads_its_env_group_file():
    cfg = compose("collect")
    assert to_dict(cfg.env) == to_dict(load_group("env", "reacher-easy"))
    assert cfg.episodes == 200 and cfg.policy.name == "ou" and cfg.out is None


def test_group_selection_and_dotted_overrides():
    cfg = compose("collect", ["env=reacher-hard", "episodes=3", "policy.sigma=0.5", "env.image_size=32"])
    assert cfg.env.name == "reacher-hard" and cfg.env.task == "hard" and cfg.env.image_size == 32
    assert cfg.episodes == 3 and cfg.policy.sigma == 0.5


def test_leading_dashes_are_accepted_as_wandb_agents_pass_them():
    cfg = compose("collect", ["--env=point_mass-easy", "--env.action_repeat=3", "--out=/tmp/x", "--progress=false"])
    assert cfg.env.name == "point_mass-easy" and cfg.env.action_repeat == 3
    assert cfg.out == "/tmp/x" and cfg.progress is False


def test_values_are_parsed_as_yaml():
    cfg = compose("collect", ["seed=7", "policy.theta=1e-1", "out=null", "env.success_joints=[0,1]"])
    assert cfg.seed == 7 and cfg.policy.theta == pytest.approx(0.1) and cfg.out is None
    assert list(cfg.env.success_joints) == [0, 1]


def test_group_file_inherits_from_its_base():
    cfg = compose("train", ["data.path=x", "model=state"])
    assert cfg.model.obs_type == "state" and cfg.model.encoder.name == "mlp"
    assert cfg.model.predictor.name == "mlp" and "base" not in cfg.model


def test_plus_adds_a_key_the_file_does_not_list():
    cfg = compose("train", ["data.path=x", "+trainer.accumulate_grad_batches=2"])
    assert cfg.trainer.accumulate_grad_batches == 2


def test_unknown_key_names_the_nearest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'episodez'; did you mean 'episodes'\? \(see configs/collect.yaml\)"):
        compose("collect", ["episodez=3"])
    with pytest.raises(ConfigError, match="unknown config key 'env.image_sise'; did you mean 'env.image_size'"):
        compose("collect", ["env=reacher-hard", "env.image_sise=32"])
    with pytest.raises(ConfigError, match="unknown config key 'model.encoder.embed_dimm'; did you mean 'model.encoder.embed_dim'"):
        compose("train", ["model.encoder.embed_dimm=3"])


def test_a_studys_command_section_takes_any_key_of_that_commands_config_and_checks_it_there():
    # The suite's `collect:` lists two of configs/collect.yaml's settings; the others are its keys too.
    cfg = compose("levers", ["collect.policy.theta=0.3", "collect.policy.sigma=1", "train.model.frameskip=3",
                             "plan.env.episode_length=30"])
    assert cfg.collect.policy == {"theta": 0.3, "sigma": 1.0} and cfg.collect.episodes == 150
    assert cfg.train.model.frameskip == 3 and cfg.train.trainer.max_steps == 1500
    assert cfg.plan.env.episode_length == 30 and cfg.plan.split == "dev"
    with pytest.raises(ConfigError, match=r"unknown config key 'collect.policy.thetta'; did you mean "
                                          r"'collect.policy.theta'\? \(the collect section holds settings of "
                                          r"configs/collect.yaml\)"):
        compose("suite", ["collect.policy.thetta=0.3"])
    with pytest.raises(ConfigError, match="collect.policy.theta must be a finite number; got 'fast'"):
        compose("suite", ["collect.policy.theta=fast"])
    with pytest.raises(ConfigError, match="unknown config key 'episodez'"):  # the study's own keys stay its own
        compose("suite", ["episodez=3"])


def test_unknown_group_choice_lists_the_choices():
    with pytest.raises(ConfigError, match=r"unknown env 'reacher-esy'; did you mean 'reacher-easy'\? "
                                          r"\(choices: .*point_mass-easy, reacher-easy, reacher-hard"):
        compose("collect", ["env=reacher-esy"])


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match="override 'episodes' is not of the form key=value"):
        compose("collect", ["episodes"])


def test_composed_config_rejects_reading_an_unknown_key():
    cfg = compose("collect")
    with pytest.raises(ConfigAttributeError):
        cfg.episodez  # noqa: B018  (struct mode: a typo fails instead of reading None)


def test_collect_script_prints_config_errors_without_a_traceback():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "collect.py"), "episodez=3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "error: unknown config key 'episodez'; did you mean 'episodes'?" in result.stderr
    assert "Traceback" not in result.stderr
