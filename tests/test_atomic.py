"""Shared files (result.json, the domain classifier cache) are replaced whole: a failed write keeps the old file."""
from __future__ import annotations

import pytest

from gan_ablate.atomic import write_atomically


def test_a_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "info.json"
    write_atomically(path, lambda tmp: open(tmp, "w").write("new"))
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["info.json"]


def test_a_write_that_fails_half_way_keeps_the_old_file_whole(tmp_path):
    path = tmp_path / "classifier.pt"
    path.write_text("old")

    def torn(tmp):
        open(tmp, "w").write("half of the ne")
        raise OSError("No space left on device")

    with pytest.raises(OSError):
        write_atomically(path, torn)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["classifier.pt"]
