"""What a record says about the mechanisms its run used: the revision of each trick and of the loss, and whether its
tricks read the labels its metrics count. Kept apart from record.py (a leaf module every report reads) because it
asks the trick and loss registries."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gan_ablate.losses import LOSSES
from gan_ablate.tricks import TRICKS

if TYPE_CHECKING:
    from gan_ablate.record import RunRecord

# data whose class labels are the modes the mode metrics count: a trick that reads them is told the answer
LABELS_ARE_MODES = ("ring8", "grid25", "stacked_mnist")


def uses_mode_labels(tricks: list[str], data: str | None) -> bool:
    """Whether a run's tricks read the labels its metrics count (such a cell is set apart in reports)."""
    return data in LABELS_ARE_MODES and any(TRICKS[t].reads_labels for t in tricks if t in TRICKS)


def trick_revisions(tricks: list[str]) -> dict[str, int]:
    """The revision of each trick's mechanism the run used (records before revisions existed: 1)."""
    return {t: TRICKS[t].revision for t in tricks if t in TRICKS}


def loss_revision(loss: str) -> int:
    """The revision of the loss's mechanism the run used (records before revisions existed: 1)."""
    return LOSSES[loss].revision if loss in LOSSES else 1


def stale_tricks(record: RunRecord) -> dict[str, str]:
    """Trick (or `loss=<name>`) -> what was fixed since, for each trick and for the loss the record ran at an older
    revision of (a loss is a trick that says how the nets are scored)."""
    ran = record.trick_revisions or {}
    stale = {t: TRICKS[t].revision_note for t in record.tricks if t in TRICKS and ran.get(t, 1) < TRICKS[t].revision}
    if record.loss in LOSSES and record.loss_revision < LOSSES[record.loss].revision:
        stale[f"loss={record.loss}"] = LOSSES[record.loss].revision_note
    return stale
