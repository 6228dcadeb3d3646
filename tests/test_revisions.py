"""A record carries the revision of each mechanism it ran (tricks and the loss); a cell run before a mechanism's fix
is set apart with what was fixed, and one run at the current revision is not."""
from __future__ import annotations

import pytest

from conftest import TINY, run_train_py
from gan_ablate.losses import LOSSES
from gan_ablate.record import RESULT_FILE, RunRecord, load_record
from gan_ablate.revisions import stale_tricks
from gan_ablate.sweep.aggregate import set_apart_reason

FIXED_LOSSES = sorted(name for name, loss in LOSSES.items() if loss.revision > 1)


def test_the_losses_fixed_for_faithfulness_carry_a_revision_and_what_changed():
    assert FIXED_LOSSES == ["dragan", "ebgan", "wgan", "wgan_gp"]
    assert all(LOSSES[name].revision_note.startswith("before: ") for name in FIXED_LOSSES)


@pytest.mark.parametrize("loss", FIXED_LOSSES)
def test_a_record_of_a_loss_before_its_fix_is_set_apart_with_the_fix(loss):
    before = dict(loss=loss, tricks=[], data="ring8", status="ok")  # records had no loss_revision then
    assert stale_tricks(RunRecord(**before)) == {f"loss={loss}": LOSSES[loss].revision_note}
    assert f"`loss={loss}`" in set_apart_reason([RunRecord(**before)])
    now = RunRecord(**before, loss_revision=LOSSES[loss].revision)
    assert stale_tricks(now) == {} and set_apart_reason([now]) is None


@pytest.mark.slow
def test_a_run_records_its_losss_revision(tmp_path):
    result = run_train_py(*TINY, "loss=dragan", "trainer.max_steps=2", "metrics.every=0", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    record = load_record(tmp_path / RESULT_FILE)
    assert record.loss_revision == LOSSES["dragan"].revision
    assert stale_tricks(record) == {}
