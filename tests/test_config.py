"""Bad configuration is refused before training, with one line naming the key and what is allowed."""
import pytest
from conftest import make_cfg, run_train_py

from gan_ablate.config import ConfigError, validate
from gan_ablate.validation import check_config


@pytest.mark.parametrize("override,message", [
    ("ema.decay=1.0", r"ema\.decay=1\.0 .*\[0, 1\)"),
    ("ema.decay=-0.1", r"ema\.decay"),
    ("optim.g.lr=-1e-4", r"optim\.g\.lr=-0\.0001 .*\(0, inf\]"),
    ("optim.d.lr=0", r"optim\.d\.lr"),
    ("optim.n_critic=0", r"optim\.n_critic=0 .*\[1, inf\]"),
    ("optim.g_steps=0", r"optim\.g_steps"),
    ("optim.g.name=adagrad", r"optim\.g\.name='adagrad'.*adam, sgd, rmsprop"),
    ("data.batch_size=0", r"data\.batch_size"),
    ("+foo=1", r"foo is not a config key; allowed here: seed, data"),
    ("+model.widht=3", r"model\.widht is not a config key"),
    ("trick=instance_noise trick.instance_noise.std=-1", r"trick\.instance_noise\.std"),
    ("trick=instance_noise +trick.instance_noise.sdt=1", r"trick\.instance_noise\.sdt.*keys of trick\.instance_noise: std, decay_steps"),
])
def test_bad_values_raise_config_error_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        check_config(make_cfg(*override.split()))


def test_defaults_validate_and_trick_values_survive_composition():
    settings = validate(make_cfg("trick=[instance_noise,label_smoothing]", "trick.instance_noise.std=0.3"))
    # `_self_` before the trick group: the trick's YAML values are not lost, overrides win
    assert list(settings.trick) == ["instance_noise", "label_smoothing"]
    assert settings.trick["instance_noise"]["std"] == 0.3
    assert settings.trick["label_smoothing"]["real_low"] == 0.7


def test_image_data_selects_the_dcgan_unless_told_otherwise():
    assert validate(make_cfg("data=mnist", tiny=False)).model.name == "dcgan"
    assert validate(make_cfg("data=mnist", "model=mlp", tiny=False)).model.name == "mlp"
    assert validate(make_cfg(tiny=False)).model.name == "mlp"


@pytest.mark.parametrize("args,expected", [
    (["trick=no_such_trick"], ["no_such_trick", "instance_noise", "label_smoothing", "spectral_norm"]),
    (["trick=[label_smoothing,nope]"], ["trick=nope", "instance_noise", "spectral_norm"]),
    (["ema.decay=1.5"], ["ema.decay=1.5", "[0, 1)"]),
    (["optim.n_critic=abc"], ["optim.n_critic", "Integer"]),
    (["+foo=1"], ["foo is not a config key"]),
    (["trick=instance_noise", "trick.instance_noise=3"], ["trick.instance_noise", "mapping", "std, decay_steps", "3"]),
])
@pytest.mark.slow
def test_cli_refuses_bad_input_on_one_line_before_training(tmp_path, args, expected):
    result = run_train_py(*args, f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gan-ablate: config error:")]
    assert len(lines) == 1, result.stderr
    for word in expected:
        assert word in lines[0]
    assert not (tmp_path / "run" / "result.json").exists()  # nothing started
