"""Tricks see the GAN through TrickSurface only: GANModule implements it, every `gan.<name>` a trick module
reads is one of its members, and no trick assigns a net (replace_net is the one way to swap one)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import make_module
from torch import nn

from gan_ablate.tricks.surface import TrickSurface

TRICKS_DIR = Path(__file__).resolve().parents[1] / "gan_ablate" / "tricks"
MEMBERS = {name for name in vars(TrickSurface) if not name.startswith("_")}


def uses_of_gan(path: Path) -> list[tuple[int, str, bool]]:
    """(line, attribute, assigned) for every `gan.<attribute>` in the file."""
    return [(node.lineno, node.attr, isinstance(node.ctx, ast.Store)) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "gan"]


def test_the_surface_is_the_nets_config_data_shape_classes_real_batches_device_discriminate_and_replace_net():
    assert MEMBERS == {"G", "D", "cfg", "sample_shape", "n_classes", "device", "real_batch", "discriminate",
                       "replace_net"}


def test_the_module_implements_the_surface():
    assert isinstance(make_module(), TrickSurface)


@pytest.mark.parametrize("path", sorted(TRICKS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_tricks_read_only_the_surface_and_assign_no_net(path):
    uses = uses_of_gan(path)
    assert [(line, attr) for line, attr, _ in uses if attr not in MEMBERS] == []
    assert [(line, attr) for line, attr, assigned in uses if assigned] == []


def test_the_checks_above_see_a_trick_that_reaches_past_the_surface(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def setup(self, gan):\n    gan.G = gan.G_ema\n    gan.hooks.setup(gan)\n")
    assert sorted(uses_of_gan(bad)) == [(2, "G", True), (2, "G_ema", False), (3, "hooks", False)]


def test_replace_net_swaps_the_named_net_and_refuses_any_other_name():
    module = make_module()
    new = nn.Linear(2, 1)
    module.replace_net("D", new)
    assert module.D is new and dict(module.named_children())["D"] is new
    with pytest.raises(ValueError, match="which='G_ema', expected 'G' or 'D'"):
        module.replace_net("G_ema", new)
