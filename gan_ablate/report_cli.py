"""`gan-ablate-report SWEEP_DIR` (or `python scripts/report.py SWEEP_DIR`): turn a sweep into an ablation
report: how each cell's runs ended (diverged, failed, collapsed: the rate with its 95% Wilson interval),
one table per metric (mean, standard error and 95% CI over runs per cell, difference to the reference
cell with the p of an exact permutation test and that p adjusted over the table's comparisons), for
factorial, fractional and screening sweeps the main effects and two-way interactions of the tricks (OLS,
-1/+1 coding, 95% intervals, adjusted p, aliases named; an effect plot and an interaction map), the split
of each metric's variance into evaluation and training noise (with metrics.eval_repeats), the runs that
were skipped, failed, diverged or are still running, and plots (metric per cell, training curves of
losses, gradient norms and evaluation metrics, last samples per cell).

    gan-ablate-report multirun/2026-11-23/10-00-00
    make report DIR=multirun/2026-11-23/10-00-00

Writes report.md and report.html in the sweep folder (PNGs under report/) and prints the tables.
Works on a sweep that is still running: run it again for the newer numbers.

How many seeds: from a small pilot sweep of the design (ablation.seeds=2 or 3), --plan DELTA prints
and writes plan.md instead of the report: per metric and generator the pooled within-cell SD of the
pilot's runs, and the seeds per cell needed to detect a difference DELTA (in the metric's units) with
--power (0.8) at the alpha --adjust leaves to each of the table's comparisons (alpha/m for holm and bh),
never below the seeds the exact permutation test needs to reach that alpha at all.

    gan-ablate-report multirun/pilot --plan 0.05               # every metric
    gan-ablate-report multirun/pilot --plan modes=1 --plan hq=0.01
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gan-ablate-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (or any folder holding result.json files)")
    parser.add_argument("--reference", help="the cell every other is compared with (default: the design's "
                                            "reference, e.g. 'baseline' for add_one, 'all' for leave_one_out)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--adjust", choices=("holm", "bh", "none"), default="holm",
                        help="multiplicity adjustment of the p-values of each table: Holm (family-wise error, the "
                             "default), Benjamini-Hochberg (false discovery rate) or none")
    parser.add_argument("--failed-as", choices=("worst", "exclude"), default="worst",
                        help="diverged and failed runs enter each metric as the worst value of its table (default: "
                             "otherwise a trick is judged only on the seeds it survived), or are left out")
    parser.add_argument("--collapsed-modes", type=float, default=1, metavar="N",
                        help="a finished run covering at most N modes counts as collapsed (default 1)")
    parser.add_argument("--plan", action="append", metavar="[METRIC=]DELTA",
                        help="instead of the report, the seeds per cell to detect a difference DELTA in every metric "
                             "(or METRIC=DELTA for one; repeatable), from this pilot sweep's spread; writes plan.md")
    parser.add_argument("--power", type=float, default=0.8, help="power of the --plan (default 0.8)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a folder")
    if args.plan:
        return write_plan(args)
    from gan_ablate.record import NewerRecord
    from gan_ablate.sweep.aggregate import Analysis  # after --help: scipy and matplotlib are slow
    from gan_ablate.sweep.report import build_report, to_html, to_markdown

    analysis = Analysis(adjust=args.adjust, failed_as=args.failed_as, collapsed_modes=args.collapsed_modes)
    try:
        report = build_report(args.sweep_dir, args.reference, plots=not args.no_plots, analysis=analysis)
    except (FileNotFoundError, NewerRecord) as e:
        sys.exit(f"gan-ablate-report: {e}")
    markdown = to_markdown(report)
    (args.sweep_dir / "report.md").write_text(markdown + "\n")
    (args.sweep_dir / "report.html").write_text(to_html(report))
    print(markdown)
    print(f"\nwritten to {args.sweep_dir / 'report.md'} and {args.sweep_dir / 'report.html'}")


def write_plan(args: argparse.Namespace) -> None:
    from gan_ablate.record import NewerRecord, load_records
    from gan_ablate.sweep.aggregate import Analysis
    from gan_ablate.sweep.plan import PlanError, parse_deltas, plan_report, plan_sweep
    from gan_ablate.sweep.report import to_markdown

    try:
        records = load_records(args.sweep_dir)
    except NewerRecord as e:
        sys.exit(f"gan-ablate-report: {e}")
    if not records:
        sys.exit(f"gan-ablate-report: no result.json under {args.sweep_dir}")
    analysis = Analysis(adjust=args.adjust)
    try:
        plans = plan_sweep(records, parse_deltas(args.plan), analysis, args.power, args.reference)
    except PlanError as e:
        sys.exit(f"gan-ablate-report: {e}")
    for p in plans:
        if p.problem:
            print(f"gan-ablate-report: --plan {p.metric} ({p.net} G): {p.problem}", file=sys.stderr)
    markdown = to_markdown(plan_report(plans, records, str(args.sweep_dir), analysis, args.power))
    (args.sweep_dir / "plan.md").write_text(markdown + "\n")
    print(markdown)
    print(f"\nwritten to {args.sweep_dir / 'plan.md'}")


if __name__ == "__main__":
    main()
