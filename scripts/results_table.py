#!/usr/bin/env python
"""docs/results.md from a sweep of the PacGAN 2-D short protocols: per data set, one row per cell
(baseline and each trick added alone) with its diverged/failed/collapsed runs (95% Wilson interval),
modes / HQ% / reverse KL over its runs (mean ± standard error; a diverged or failed run counts as the
worst value of the table), the difference to the baseline where an exact permutation test, Holm-
adjusted over the table's comparisons, gives p < 0.05, and the PacGAN paper's Table 1 row beside them.

    make results                                   # runs the sweep, then this script
    python scripts/results_table.py multirun/results --out docs/results.md

Reads only the sweep's result.json files; each run is judged on its primary generator (the EMA copy
for the `ema` trick, the raw G otherwise).
"""
from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_ablate.metrics.directions import REVERSE_KL_DEFINITIONS, reverse_kl_definition  # noqa: E402
from gan_ablate.record import BASELINE, METRIC_DIRECTIONS, NewerRecord, RunRecord, load_records  # noqa: E402
from gan_ablate.sweep.aggregate import (ADJUSTMENT_NAMES, FAILED, Analysis, compare, outcomes,  # noqa: E402
                                       runs_text, set_apart_reason, summarise, tested, with_failures,
                                       worst_value)

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("modes", "hq", "reverse_kl")
DECIMALS = {"modes": 2, "hq": 1, "reverse_kl": 3}
# Lin et al., "PacGAN", NeurIPS 2018, Table 1: the unpacked GAN under the full protocol.
PAPER = {"ring8": ("8", "6.3 ± 0.5", "98.2", "0.45"), "grid25": ("25", "17.3 ± 0.8", "94.8", "0.70")}
PRESETS = {"ring8": "pacgan_ring_short", "grid25": "pacgan_grid_short"}
# why tricks/augment.py's tricks have no row here
ON_IMAGES_ONLY = "it augments images, and these protocols' data are 2-D points (it refuses them)."
# why the modern regularisers have no 2-D row
MODERN_REGULARISER = ("issue 16 reports it on stacked MNIST beside the baseline and `pac`, a section this page does "
                      "not have yet.")
# tricks of the catalogue the table does not run (the Makefile's TRICKS_2D lists the others)
LEFT_OUT = {"large_batch": "it replaces the protocols' batch of 100 by 1,024, a different protocol rather than "
                           "a trick on top of it, at 10x the compute per iteration (the command above with "
                           "`ablation.tricks=[large_batch]` and another `hydra.sweep.dir` runs it alone).",
            "diffaugment": ON_IMAGES_ONLY, "consistency": ON_IMAGES_ONLY,
            # issue 16 reports these beside the add-one table, not in it: those sections are not generated yet
            "pac": "packing is the method PacGAN's protocol measures, not a trick on top of it: it gets its own rows "
                   "(GAN, PacGAN2, PacGAN4 on the faithful presets), a section this page does not have yet.",
            "r1": MODERN_REGULARISER, "r2": MODERN_REGULARISER, "lecam": MODERN_REGULARISER}


def regenerating_command() -> str:
    """The sweep command exactly as `make results` runs it (the Makefile is the single source)."""
    out = subprocess.run(["make", "-s", "-n", "results"], cwd=ROOT, capture_output=True, text=True, check=True)
    sweep = [line for line in out.stdout.replace("\\\n", " ").splitlines() if "train.py" in line]
    return " ".join(sweep[0].split()).replace(".venv/bin/python", "python")


def primary_value(record: RunRecord, metric: str) -> float | None:
    per_net = record.metrics.get(record.primary or "raw", {})
    value = per_net.get(metric)
    if value is None:
        return None
    return 100 * float(value) if metric == "hq" else float(value)


def reverse_kl_text(records: list[RunRecord]) -> str:
    """Which histogram the runs' `reverse_kl` is of (metrics.reverse_kl): the paper's row uses PacGAN's, the
    high-quality samples'; a page mixing two definitions is refused, its column would compare unlike numbers."""
    found = {reverse_kl_definition(r.config) for r in records}
    if len(found) > 1:
        sys.exit(f"results_table: the runs record reverse_kl under {len(found)} definitions ({', '.join(sorted(found))}"
                 "; metrics.reverse_kl): give the table runs of one")
    definition = found.pop() if found else "nearest_mode"
    return REVERSE_KL_DEFINITIONS[definition]


def cell_rows(records: list[RunRecord],
              analysis: Analysis = Analysis()) -> tuple[list[list[str]], list[list[str]], int]:
    """The rows of the comparison, the rows set apart (their last column: why), and how many comparisons
    the verdicts were adjusted over (every metric of every compared cell: the table is one family)."""
    by_cell: dict[str, list[RunRecord]] = {}
    for r in sorted(records, key=lambda r: r.job_num or 0):
        by_cell.setdefault(r.cell_name, []).append(r)
    why = {cell: None if cell == BASELINE else set_apart_reason(runs) for cell, runs in by_cell.items()}
    failed = {cell: sum(r.status in FAILED for r in runs) for cell, runs in by_cell.items()}
    samples, imputed = {}, {}
    for metric in METRICS:
        recorded = {cell: [v for v in (primary_value(r, metric) for r in runs if r.status == "ok") if v is not None]
                    for cell, runs in by_cell.items()}
        # nan: PacGAN's reverse KL of a run with no high-quality sample (no histogram): it counts as a failed run
        finished = {cell: [v for v in vs if not math.isnan(v)] for cell, vs in recorded.items()}
        worst = worst_value([v for values in finished.values() for v in values], METRIC_DIRECTIONS[metric])
        imputed[metric] = analysis.failed_as == "worst" and worst is not None
        for cell in by_cell:
            undefined = len(recorded[cell]) - len(finished[cell])
            samples[cell, metric] = with_failures(finished[cell], failed[cell] + undefined, worst, analysis)
    compared = [(cell, metric) for cell in by_cell if cell != BASELINE and not why[cell]
                for metric in METRICS if BASELINE in by_cell]
    comparisons = dict(zip(compared, compare([(samples[key], samples[BASELINE, key[1]]) for key in compared],
                                             analysis)))
    p_label = "p" if analysis.adjust == "none" else "adjusted p"
    rows, apart = [], []
    for cell, runs in by_cell.items():
        o = outcomes(runs, analysis.collapsed_modes)
        row = [f"`{cell}`", runs_text(o.ok, failed[cell], imputed[METRICS[0]]),
               f"{o.bad}/{o.runs} [{o.rate_low:.2f}, {o.rate_high:.2f}]" if o.runs else "–"]
        verdicts = []
        for metric in METRICS:
            s = summarise(samples[cell, metric])
            places = DECIMALS[metric]
            row.append("–" if s.n == 0 else f"{s.mean:.{places}f} ± {s.se:.{places}f}" if s.n > 1
                       else f"{s.mean:.{places}f}")
            c = comparisons.get((cell, metric))
            if c is not None and (call := c.call(METRIC_DIRECTIONS[metric])):
                verdicts.append(f"{call} {metric} ({c.diff:+.{places}f}, {p_label} {c.p_adjusted:.2g})")
        if why[cell]:
            apart.append(row + [why[cell]])
        else:
            rows.append(row + [", ".join(verdicts)])
    return rows, apart, tested(list(comparisons.values()))


def plot(records: list[RunRecord], out: Path) -> None:
    """Per data set and metric, every cell's mean ± s.e. over seeds, the baseline's mean as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in PRESETS if any(r.dataset == d for r in records)]
    fig, axes = plt.subplots(1, 2 * len(datasets), figsize=(5.5 * len(datasets), 9), sharey=True, squeeze=False)
    for i, data in enumerate(datasets):
        cells: dict[str, list[RunRecord]] = {}
        for r in sorted(records, key=lambda r: r.job_num or 0):
            if r.dataset == data and r.status == "ok":
                cells.setdefault(r.cell_name, []).append(r)
        names = list(cells)
        for j, (metric, label) in enumerate((("modes", "modes"), ("hq", "HQ %"))):
            ax = axes[0][2 * i + j]
            stats_ = [summarise([v for v in (primary_value(r, metric) for r in cells[c]) if v is not None]) for c in names]
            ax.errorbar([s.mean for s in stats_], range(len(names)), xerr=[0 if math.isnan(s.se) else s.se for s in stats_],
                        fmt="o", ms=4, capsize=2)
            if BASELINE in cells:
                ax.axvline(stats_[names.index(BASELINE)].mean, color="grey", ls="--", lw=1)
            ax.set_title(f"{data}: {label}")
            ax.set_yticks(range(len(names)), names, fontsize=8)
            ax.grid(axis="x", alpha=0.3)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def render(records: list[RunRecord], command: str, analysis: Analysis = Analysis()) -> str:
    statuses = Counter(r.status for r in records)
    iterations = sorted({r.iterations for r in records if r.status == "ok"})
    out = [
        "# Results: every trick on PacGAN's 2-D protocols (short budget)",
        "",
        "Generated by `make results` (the sweep, then `scripts/results_table.py`) from the runs' result.json",
        "files; do not edit by hand. The sweep it ran:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"{len(records)} runs ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}); "
        f"iterations per run: {', '.join(map(str, iterations))}.",
        "",
        "## How the short protocol differs from the paper",
        "",
        "The presets `pacgan_ring_short` and `pacgan_grid_short` keep PacGAN's data (100k points, std 0.01",
        "for the ring, 0.05 for the grid), nets (G 4×400 ReLU + batch norm, D 3×200 maxout with 5 pieces),",
        "z in R², Adam 1e-4 β1 0.8, batch 100, and evaluation (2,500 samples, high quality within 3σ of a",
        f"mode, reverse KL of the histogram over the modes of {reverse_kl_text(records)}). They differ in one",
        "thing, the budget: **2,000 iterations (ring) and 500 (grid) instead of 400,000 (400 epochs)**, 1/200",
        "and 1/800 of the paper's. The paper's rows (reverse KL of the high-quality samples' histogram) show",
        "the scale, not a target: what means something is the comparison between the rows of one table",
        "(same budget, same seeds). The grid runs are shorter than the ring's only to fit the whole table",
        "into a working session on 2 CPU cores (two runs at a time, one thread each).",
        "The paper's row is its mean ± s.e. over its own trials. Here a cell's runs are its seeds; a run",
        "that diverged or failed " + ("counts as the worst value any run of its table reached"
                                      if analysis.failed_as == "worst" else "is left out of the means"),
        "(so does, in its reverse KL, a run without any high-quality sample: PacGAN's is undefined there).",
        "`failure rate`: the runs that diverged, failed or collapsed to at most one mode, with the 95%",
        "Wilson interval of that rate. A trick is called better or worse only where an exact permutation",
        "test of its difference to the baseline gives p < 0.05"
        + (f" after {ADJUSTMENT_NAMES[analysis.adjust]} adjustment over every comparison of its table (each"
           if analysis.adjust != "none" else " (not adjusted for multiplicity; each"),
        "metric of each cell). With 3 seeds a side no such test can go below p = 0.1: 3-seed tables call",
        "nothing, and a call needs more seeds, not a looser test.",
        "",
        "![modes and HQ% per cell, mean ± s.e. over seeds; dashed: the baseline](results.png)",
        "",
        "Each trick runs with its catalogue defaults (`gan_ablate/conf/trick/<name>.yaml`) on top of the preset;",
        "`ema` is judged on its EMA generator (decay 0.999), every other cell on the raw G.",
        *[f"`{name}` is left out: {why}" for name, why in LEFT_OUT.items()],
    ]
    header = ["cell", "seeds", "failure rate [95% Wilson]", "modes", "HQ %",
              f"reverse KL ({reverse_kl_text(records)})", "vs baseline (adjusted p < 0.05)"]
    for data, preset in PRESETS.items():
        runs = [r for r in records if r.dataset == data]
        if not runs:
            continue
        total, *paper = PAPER[data]
        rows, apart, n_compared = cell_rows(runs, analysis)
        family = (f"{ADJUSTMENT_NAMES[analysis.adjust]}-adjusted over the {n_compared} comparisons of this table"
                  if analysis.adjust != "none" else "p not adjusted for multiplicity")
        out += ["", f"## {data} (`experiment={preset}`, {total} modes)", "", f"Verdicts: {family}.", "",
                markdown_table(header, [["PacGAN paper, GAN, 400 epochs", "–", "–", *paper, ""]] + rows)]
        if apart:
            out += ["", f"Set apart on {data}: no verdict, not comparable with the rows above.", "",
                    markdown_table(header[:-1] + ["why set apart"], apart)]
    out += ["", "## On a GPU", "",
            "Not measured yet: no GPU was available where this table was made. `make bench` on a GPU machine",
            "prints GANModule vs the plain loop (mnist/DCGAN) and `python scripts/bench_metrics.py` the seconds",
            "per FID evaluation; their figures belong here with the device's name."]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder `make results` wrote (multirun/results)")
    parser.add_argument("--out", type=Path, help="write the markdown here (default: print it)")
    parser.add_argument("--adjust", choices=("holm", "bh", "none"), default="holm",
                        help="multiplicity adjustment over each table's comparisons (default Holm)")
    parser.add_argument("--failed-as", choices=("worst", "exclude"), default="worst",
                        help="diverged and failed runs as the worst value of the table (default) or left out")
    args = parser.parse_args()
    try:
        records = load_records(args.sweep_dir) if args.sweep_dir.is_dir() else []
    except NewerRecord as e:
        sys.exit(f"results_table: {e}")
    if not records:
        sys.exit(f"results_table: no result.json under {args.sweep_dir}; run `make results` first")
    text = render(records, regenerating_command(), Analysis(adjust=args.adjust, failed_as=args.failed_as))
    if args.out:
        args.out.write_text(text)
        plot(records, args.out.with_name("results.png"))
        print(f"wrote {args.out} and {args.out.with_name('results.png')} from {len(records)} runs")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
