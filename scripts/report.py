#!/usr/bin/env python
"""Summarise a sweep: per cell (trick combination), mean, standard error and 95% CI over seeds.

    python scripts/report.py multirun/2026-11-23/10-00-00

Prints a markdown table per metric and writes it to report.md in the sweep folder. Cells that were
skipped, failed or diverged are listed under the tables. Works on a sweep that is still running.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_ablate.record import load_records  # noqa: E402
from gan_ablate.sweep.aggregate import group_cells, metric_names, summarise  # noqa: E402


def fmt(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.3g}"


def report(sweep_dir: Path) -> str:
    records = load_records(sweep_dir)
    if not records:
        raise SystemExit(f"report: no result.json under {sweep_dir}")
    cells = group_cells(records)
    lines = [f"# Ablation report: {sweep_dir}", "",
             f"{len(records)} runs in {len(cells)} cells; statuses: "
             + ", ".join(f"{s} {sum(r.get('status') == s for r in records)}"
                         for s in sorted({r.get('status') for r in records})), ""]
    extractors = sorted({str(r.get("extractor_id", r.get("extractor"))) for r in records if r.get("status") == "ok"})
    if len(extractors) > 1:
        lines += [f"**Warning**: runs measured with different extractors ({', '.join(extractors)}).", ""]
    for metric in metric_names(records):
        lines += [f"## {metric}", "", "| cell | G | n | mean | s.e. | 95% CI |", "|---|---|---|---|---|---|"]
        for cell in cells.values():
            for net in ("raw", "ema"):
                values = cell.values(net, metric)
                if values:
                    s = summarise(values)
                    lines.append(f"| {cell.name} | {net} | {s.n} | {fmt(s.mean)} | {fmt(s.se)} | "
                                 f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}] |")
        lines.append("")
    not_ok = [r for r in records if r.get("status") != "ok"]
    if not_ok:
        lines += ["## Runs without results", "", "| run | status | reason |", "|---|---|---|"]
        for r in not_ok:
            reason = r.get("reason") or r.get("error") or ""
            lines.append(f"| {r.get('name', r['run_dir'])} | {r.get('status')} | {reason} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (or any folder holding result.json files)")
    args = parser.parse_args()
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a folder")
    text = report(args.sweep_dir)
    (args.sweep_dir / "report.md").write_text(text + "\n")
    print(text)
    print(f"\nwritten to {args.sweep_dir / 'report.md'}")


if __name__ == "__main__":
    main()
