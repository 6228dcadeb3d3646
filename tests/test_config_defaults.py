"""One source for each default (gan_ablate/config.py's docstring says which): a YAML option states its name and
what it changes, never a value its schema already holds, so the two cannot drift apart."""
from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, make_cfg
from gan_ablate.config import (EMA_TRICK_KEYS, DataConfig, EmaConfig, LoggerConfig, LossConfig, ModelConfig,
                               OptimConfig, TrainConfig, validate)
from gan_ablate.tricks.base import TRICKS

CONF = ROOT / "gan_ablate" / "conf"
# the groups whose options fill a node of the schema; the families (norm_d, latent, ...), experiments and tricks
# come after them in train.yaml's defaults list and exist to set values over what those chose, schema default or not
SCHEMAS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "loss": LossConfig, "logger": LoggerConfig}
OPTIONS = [(group, path.stem) for group in SCHEMAS for path in sorted((CONF / group).glob("*.yaml"))]


def own_node(group: str, option: str) -> dict:
    """The values an option sets in its own group's node (a `# @package _global_` option nests them under it)."""
    path = CONF / group / f"{option}.yaml"
    node = OmegaConf.to_container(OmegaConf.load(path)) or {}
    node.pop("defaults", None)
    return node.get(group, {}) if path.read_text().startswith("# @package _global_") else node


def restated_defaults(values: dict, defaults: dict, prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from restated_defaults(value, defaults[key], f"{prefix}{key}.")
        elif value == defaults[key] and f"{prefix}{key}" != "name":  # the name is the option itself
            yield f"{prefix}{key}"


@pytest.mark.parametrize("group,option", OPTIONS)
def test_a_group_option_states_only_what_differs_from_its_schema(group, option):
    defaults = dataclasses.asdict(SCHEMAS[group]())
    assert list(restated_defaults(own_node(group, option), defaults)) == [], \
        f"{group}/{option}.yaml restates these defaults of gan_ablate/config.py; state them there only"


def test_the_default_run_is_the_schemas_defaults():
    """train.yaml's default options state nothing but their names: `python train.py` runs TrainConfig()."""
    assert validate(make_cfg(tiny=False)) == TrainConfig()


def test_the_ema_trick_starts_from_the_ema_configs_defaults():
    ema_defaults = {key: getattr(EmaConfig(), key) for key in EMA_TRICK_KEYS}
    assert dataclasses.asdict(TRICKS["ema"].Params()) == ema_defaults
    assert "trick" not in OmegaConf.load(CONF / "trick" / "ema.yaml")  # ema.yaml takes them from the schema
    composed = validate(make_cfg("trick=ema", tiny=False))
    assert composed.trick["ema"] == ema_defaults
    assert {key: getattr(composed.ema, key) for key in EMA_TRICK_KEYS} == ema_defaults
    overridden = validate(make_cfg("trick=ema", "trick.ema.decay=0.99", tiny=False))
    assert overridden.ema.decay == 0.99  # the trick's parameter still drives ema.*


@pytest.mark.parametrize("name", sorted(path.stem for path in (CONF / "trick").glob("*.yaml")))
def test_a_tricks_yaml_lists_its_params_defaults_unchanged(name):
    """A trick's YAML lists every parameter (the composed config, recorded with each run and compared on resume,
    shows them), so its Params and its YAML state each default: they must agree."""
    composed = OmegaConf.to_container(make_cfg(f"trick={name}", tiny=False).trick[name], resolve=True)
    assert composed == dataclasses.asdict(TRICKS[name].Params())
