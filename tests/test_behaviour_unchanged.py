"""Issue 14's restructuring changed no behaviour: twelve ring8 runs of 200 iterations (the baseline, five
tricks, the losses whose side effects became tricks) give the metrics and evaluation history recorded
before it (tests/data/behaviour_ring8_200.json, by scripts/behaviour_record.py at commit d01a18c).

A change that means to alter training (a fixed bug, a new default) re-records the file in its own commit,
saying why; any other difference here is a regression."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDED = json.loads((ROOT / "tests" / "data" / "behaviour_ring8_200.json").read_text())
spec = importlib.util.spec_from_file_location("behaviour_record", ROOT / "scripts" / "behaviour_record.py")
behaviour_record = importlib.util.module_from_spec(spec)
spec.loader.exec_module(behaviour_record)


def test_the_recorded_runs_are_the_scripts_runs():
    assert RECORDED["common"] == behaviour_record.COMMON
    assert {n: r["overrides"] for n, r in RECORDED["runs"].items()} == behaviour_record.RUNS


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RECORDED["runs"]))
def test_training_gives_what_it_gave_before_the_restructuring(name):
    before = RECORDED["runs"][name]
    now = behaviour_record.behaviour(before["overrides"])
    assert now["status"] == before["status"] and now["iterations"] == before["iterations"] == 200
    # one CPU kind, one torch: the same arithmetic gives the same bits; the tolerance only forgives a
    # last-digit difference on another CPU's vector units
    assert flat(now["metrics"]) == pytest.approx(flat(before["metrics"]), rel=1e-6)
    assert len(now["history"]) == len(before["history"])
    for h_now, h_before in zip(now["history"], before["history"]):
        assert flat(h_now) == pytest.approx(flat(h_before), rel=1e-6)


def flat(values: dict, prefix: str = "") -> dict:
    """{"raw": {"modes": 1}} as {"raw/modes": 1}: pytest.approx compares flat mappings only."""
    out = {}
    for key, value in values.items():
        out.update(flat(value, f"{prefix}{key}/") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out
