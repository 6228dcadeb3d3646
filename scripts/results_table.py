#!/usr/bin/env python
"""docs/results.md from the folder `make results` wrote (scripts/make_results.py: its plan.json and the runs'
result.json files), or from the archive of those records the page is committed with.

    make results                                                   # the sweeps, then this script
    python scripts/results_table.py multirun/results --out docs/results.md   # also writes the archive
    python scripts/results_table.py docs/results_records.json.gz             # the page, from the archive

Each table: one row per cell with its diverged/failed/collapsed runs (95% Wilson interval) and its metrics over
its runs (mean ± standard error; a diverged or failed run counts as the worst value of the table), and a call
against the table's reference cell where an exact permutation test, Holm-adjusted over every comparison of the
table, gives p < 0.05. Each run is judged on its primary generator (the EMA copy for `ema`, the raw G otherwise).
tests/test_results_doc.py renders the committed archive and requires the committed page, word for word.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_ablate.metrics.directions import REVERSE_KL_DEFINITIONS, reverse_kl_definition  # noqa: E402
from gan_ablate.record import BASELINE, METRIC_DIRECTIONS, NewerRecord, RunRecord, load_records  # noqa: E402
from gan_ablate.sweep.aggregate import (ADJUSTMENT_NAMES, FAILED, Analysis, compare, outcomes,  # noqa: E402
                                       runs_text, set_apart_reason, smallest_p, summarise, tested,
                                       with_failures, worst_value)

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT / "docs" / "results_records.json.gz"
METRICS_2D = ("modes", "hq", "reverse_kl")
METRICS_STACKED = ("modes", "kl")
DECIMALS = {"modes": 2, "hq": 1, "reverse_kl": 3, "kl": 3}
DATASETS = {"ring8": ("pacgan_ring_short", 8), "grid25": ("pacgan_grid_short", 25)}
PAPER_BUDGET = 400_000  # PacGAN's 2-D runs: 400 epochs of 100k points in batches of 100
# Lin et al., "PacGAN", NeurIPS 2018, Table 1 (10 trials, mean ± standard error), as fjxmlzn/PacGAN's
# synthetic_data_experiments/results/Table1.png prints it: modes, high-quality samples %, reverse KL
PAPER_2D = {"ring8": {"GAN": ("6.3 ± 0.5", "98.2 ± 0.2", "0.45 ± 0.09"),
                      "PacGAN2": ("7.9 ± 0.1", "95.6 ± 2.0", "0.07 ± 0.03"),
                      "PacGAN4": ("7.8 ± 0.1", "95.9 ± 1.4", "0.07 ± 0.02")},
            "grid25": {"GAN": ("17.3 ± 0.8", "94.8 ± 0.7", "0.70 ± 0.07"),
                       "PacGAN2": ("23.8 ± 0.7", "91.3 ± 0.8", "0.13 ± 0.04"),
                       "PacGAN4": ("24.8 ± 0.2", "93.6 ± 0.6", "0.04 ± 0.01")}}
# Table 2 (stacked MNIST, VEEGAN's setting, 10 trials): modes of 1,000, KL
PAPER_STACKED = {"DCGAN (the authors' implementation)": ("78.9 ± 6.46", "4.50 ± 0.127"),
                 "PacDCGAN2": ("1000.0 ± 0.00", "0.06 ± 0.003"), "PacDCGAN4": ("1000.0 ± 0.00", "0.07 ± 0.005")}
# why tricks/augment.py's tricks have no 2-D row
ON_IMAGES_ONLY = "it augments images, and these protocols' data are 2-D points (it refuses them)."
# tricks of the catalogue the 2-D tables never run (scripts/make_results.py screens the others)
LEFT_OUT = {"large_batch": "it replaces the protocols' batch of 100 by 1,024, a different protocol rather than "
                           "a trick on top of it, at 10x the compute per iteration.",
            "diffaugment": ON_IMAGES_ONLY, "consistency": ON_IMAGES_ONLY,
            "pac": "packing is the method PacGAN's protocol measures, not a trick on top of it: it has its own rows "
                   "(GAN, PacGAN2, PacGAN4) and is the opponent of the best stack."}


@dataclass
class Results:
    """What the page is made of: make_results' plan and, per stage folder, its runs' records."""
    plan: dict
    records: dict[str, list[RunRecord]] = field(default_factory=dict)

    def of(self, stage: str) -> list[RunRecord]:
        return self.records.get(stage, [])

    @classmethod
    def from_folder(cls, folder: Path) -> "Results":
        plan_file = folder / "plan.json"
        if not plan_file.is_file():
            sys.exit(f"results_table: no plan.json in {folder}; run `make results` first")
        plan = json.loads(plan_file.read_text())
        records = {stage: load_records(folder / stage) for stage in plan["stages"] if (folder / stage).is_dir()}
        return cls(plan, records)

    @classmethod
    def from_archive(cls, path: Path) -> "Results":
        data = json.loads(gzip.decompress(path.read_bytes()))
        records = {stage: [RunRecord(None, **r) for r in runs] for stage, runs in data["records"].items()}
        return cls(data["plan"], records)

    def write_archive(self, path: Path) -> None:
        records = {stage: [r.to_json() for r in runs] for stage, runs in self.records.items()}
        data = {"plan": self.plan, "records": records}
        # mtime 0: the same records give the same bytes (keys keep their order: the plan's is the pipeline's)
        path.write_bytes(gzip.compress(json.dumps(data).encode(), mtime=0))


def primary_value(record: RunRecord, metric: str) -> float | None:
    value = record.metrics.get(record.primary or "raw", {}).get(metric)
    if value is None:
        return None
    return 100 * float(value) if metric == "hq" else float(value)


def reverse_kl_text(records: list[RunRecord]) -> str:
    """Which histogram the runs' `reverse_kl` is of (metrics.reverse_kl); a page mixing two is refused: its column
    would compare unlike numbers."""
    found = {reverse_kl_definition(r.config) for r in records if r.dataset in DATASETS}
    if len(found) > 1:
        sys.exit(f"results_table: the runs record reverse_kl under {len(found)} definitions ({', '.join(sorted(found))}"
                 "; metrics.reverse_kl): give the table runs of one")
    return REVERSE_KL_DEFINITIONS[found.pop() if found else "nearest_mode"]


def renamed(records: list[RunRecord], name: str) -> list[RunRecord]:
    """Copies of `records` counted in the cell `name` (the page's rows are not always the sweeps' cells)."""
    return [RunRecord(None, **{**r.to_json(), "cell": name}) for r in records]


def pac_m(record: RunRecord) -> int | None:
    return ((record.config.get("trick") or {}).get("pac") or {}).get("m")


def runs_by_cell(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """The runs of each cell in job and seed order (a skipped cell's placeholders are no runs)."""
    by_cell: dict[str, list[RunRecord]] = {}
    for r in sorted(records, key=lambda r: (r.job_num or 0, r.seed or 0)):
        if r.status != "skipped":
            by_cell.setdefault(r.cell_name, []).append(r)
    return by_cell


def cell_samples(by_cell: dict[str, list[RunRecord]], metric: str, analysis: Analysis = Analysis()
                 ) -> tuple[dict[str, list[float]], bool]:
    """Per cell, `metric` of each finished run on its primary G, and whether failures were counted as the worst value:
    under failed_as=worst (the default) a run that diverged or failed counts as the worst value any run of these cells
    reached. The tables and make_results' screen and stack choice all count runs this one way."""
    failed = {cell: sum(r.status in FAILED for r in runs) for cell, runs in by_cell.items()}
    recorded = {cell: [v for v in (primary_value(r, metric) for r in runs if r.status == "ok") if v is not None]
                for cell, runs in by_cell.items()}
    # nan: PacGAN's reverse KL of a run with no high-quality sample (no histogram): it counts as a failed run
    finished = {cell: [v for v in vs if not math.isnan(v)] for cell, vs in recorded.items()}
    worst = worst_value([v for values in finished.values() for v in values], METRIC_DIRECTIONS[metric])
    samples = {cell: with_failures(finished[cell], failed[cell] + len(recorded[cell]) - len(finished[cell]), worst,
                                   analysis) for cell in by_cell}
    return samples, analysis.failed_as == "worst" and worst is not None


def cell_rows(records: list[RunRecord], metrics: tuple[str, ...], reference: str = BASELINE,
              analysis: Analysis = Analysis(), untested: tuple[str, ...] = ()
              ) -> tuple[list[list[str]], list[list[str]], int, float]:
    """The rows of one table, the rows set apart (their last column: why), how many comparisons the calls were
    adjusted over (every metric of every compared cell against `reference`: the table is one family; `untested`
    cells are shown, not compared), and the smallest adjusted p those comparisons can reach with these runs."""
    by_cell = runs_by_cell(records)
    if reference in by_cell:  # the reference row first
        by_cell = {reference: by_cell[reference], **by_cell}
    why = {cell: None if cell == reference else set_apart_reason(runs) for cell, runs in by_cell.items()}
    failed = {cell: sum(r.status in FAILED for r in runs) for cell, runs in by_cell.items()}
    samples, imputed = {}, {}
    for metric in metrics:
        per_cell, imputed[metric] = cell_samples(by_cell, metric, analysis)
        samples.update({(cell, metric): values for cell, values in per_cell.items()})
    compared = [(cell, metric) for cell in by_cell if cell != reference and cell not in untested and not why[cell]
                for metric in metrics if reference in by_cell]
    comparisons = dict(zip(compared, compare([(samples[key], samples[reference, key[1]]) for key in compared],
                                             analysis)))
    rows, apart = [], []
    for cell, runs in by_cell.items():
        o = outcomes(runs, analysis.collapsed_modes)
        row = [f"`{cell}`", runs_text(o.ok, failed[cell], imputed[metrics[0]]),
               f"{o.bad}/{o.runs} [{o.rate_low:.2f}, {o.rate_high:.2f}]" if o.runs else "–"]
        calls = []
        for metric in metrics:
            s = summarise(samples[cell, metric])
            places = DECIMALS[metric]
            row.append("–" if s.n == 0 else f"{s.mean:.{places}f} ± {s.se:.{places}f}" if s.n > 1
                       else f"{s.mean:.{places}f}")
            c = comparisons.get((cell, metric))
            if c is not None and (call := c.call(METRIC_DIRECTIONS[metric])):
                calls.append(f"{call} {metric} ({c.diff:+.{places}f}, adjusted p {c.p_adjusted:.2g})")
        if why[cell]:
            apart.append(row + [why[cell]])
        else:
            rows.append(row + ["(shown, not tested)" if cell in untested else ", ".join(calls)])
    n = tested(list(comparisons.values()))
    floor = min((smallest_p(len(samples[key]), len(samples[reference, key[1]])) for key in compared), default=math.nan)
    # Holm's first step multiplies the smallest p by the number of comparisons; BH's and none's leave it
    return rows, apart, n, min(1.0, floor * n) if analysis.adjust == "holm" else floor


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def header(metrics: tuple[str, ...], reverse_kl: str, against: str) -> list[str]:
    names = {"modes": "modes", "hq": "HQ %", "reverse_kl": f"reverse KL ({reverse_kl})", "kl": "KL (mode histogram)"}
    return (["cell", "runs", "failure rate [95% Wilson]"] + [names[m] for m in metrics]
            + [f"vs `{against}` (Holm-adjusted p < 0.05)"])


def table(records: list[RunRecord], metrics: tuple[str, ...], reverse_kl: str, reference: str = BASELINE,
          paper_rows: list[list[str]] = (), analysis: Analysis = Analysis(), untested: tuple[str, ...] = ()
          ) -> list[str]:
    rows, apart, n, floor = cell_rows(records, metrics, reference, analysis, untested)
    head = header(metrics, reverse_kl, reference)
    adjusted = (f"{ADJUSTMENT_NAMES[analysis.adjust]}-adjusted" if analysis.adjust != "none" else "not adjusted")
    reach = ("" if math.isnan(floor) else f" With these runs the smallest adjusted p any comparison can reach is "
             f"{floor:.2g}" + ("" if floor < 0.05 else ": this table can call nothing") + ".")
    out = [f"Calls: exact permutation test, {adjusted} over the {n} comparisons of this table.{reach}", "",
           markdown_table(head, list(paper_rows) + rows)]
    if apart:
        out += ["", "Set apart: no call, not comparable with the rows above.", "",
                markdown_table(head[:-1] + ["why set apart"], apart)]
    return out


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def commands(plan: dict, stage: str) -> list[str]:
    found = plan["stages"].get(stage, {}).get("commands", [])
    return ["```bash", *found, "```"] if found else ["(not run)"]


def seconds_per_iteration(records: list[RunRecord]) -> float | None:
    times = [r.wall_time_s / r.iterations for r in records if r.status == "ok" and r.wall_time_s and r.iterations]
    return sum(times) / len(times) if times else None


def lenth_margin(effects: list[float]) -> tuple[float, float]:
    """Lenth's (1989) pseudo standard error of unreplicated effects and its 95% margin of error, t(0.975, m/3) x PSE:
    the noise yardstick of a saturated screen, which has no residual degrees of freedom of its own."""
    from scipy import stats

    sizes = [abs(e) for e in effects]
    s0 = 1.5 * float(np.median(sizes))
    small = [e for e in sizes if e < 2.5 * s0]
    pse = 1.5 * float(np.median(small)) if small else 0.0
    return pse, float(stats.t.ppf(0.975, len(effects) / 3)) * pse


def seeds_text(values) -> str:
    values = list(values)
    return f"{min(values)}-{max(values)}" if values == list(range(min(values), max(values) + 1)) else \
        ", ".join(map(str, values))


def screen_section(results: Results, data: str) -> list[str]:
    stage = results.plan["stages"].get(f"screen/{data}", {})
    effects, kept = stage.get("effects", {}), stage.get("kept", [])
    runs = results.of(f"screen/{data}")
    pse, margin = lenth_margin(list(effects.values())) if effects else (math.nan, math.nan)
    out = [f"### Screen on {data}", "", *commands(results.plan, f"screen/{data}"), "",
           f"{len(runs)} runs ({', '.join(f'{n} {s}' for s, n in sorted(Counter(r.status for r in runs).items()))}), "
           f"one seed per Plackett-Burman cell; each trick is on in half of them. Main effect on modes (primary G; a "
           "failed run as the worst value): the mean with the trick on minus the mean with it off, partly confounded "
           "with two-way interactions of the tricks on beside it. A saturated screen has no residual degrees of "
           f"freedom: Lenth's pseudo standard error of the effects is {pse:.2f} modes and its 95% margin "
           f"{margin:.2f}; an effect inside the margin is indistinguishable from noise. The screen ranks, it calls "
           f"nothing; the add-one table tests. Kept: the tricks with a positive effect, largest first, at most "
           f"{results.plan.get('keep_at_most', len(kept))}: {', '.join(f'`{t}`' for t in kept) or 'none'}.", ""]
    ranked = sorted(effects.items(), key=lambda kv: -kv[1])
    out.append(markdown_table(["trick", "main effect on modes", "beyond Lenth's margin", "kept"],
                              [[f"`{t}`", f"{e:+.2f}", "yes" if abs(e) > margin else "", "yes" if t in kept else ""]
                               for t, e in ranked]))
    not_screened = stage.get("not_screened", {})
    if not_screened:
        out += ["", "Not screened on this data set:", ""]
        out += [f"- `{t}`: {why}" for t, why in sorted(not_screened.items())]
    return out


def gan_runs(results: Results, data: str) -> list[RunRecord]:
    """The GAN row's runs: the add-one table's baseline where that table ran on `data`, else the pacgan stage's
    own (make_results.pacgan_commands)."""
    baseline = [r for r in results.of(f"add_one/{data}") if r.cell_name == BASELINE]
    return baseline or [r for r in results.of(f"pacgan/{data}") if not r.tricks]


def pacgan_section(results: Results, data: str, reverse_kl: str, analysis: Analysis) -> list[str]:
    packed = [r for r in results.of(f"pacgan/{data}") if r.tricks == ["pac"]]
    gan = renamed(gan_runs(results, data), "GAN")
    rows = gan + [r for m in (2, 4) for r in renamed([p for p in packed if pac_m(p) == m], f"PacGAN{m}")]
    paper = [[f"PacGAN paper, {name}, 400 epochs", "10", "–", *values, ""] for name, values in PAPER_2D[data].items()]
    return [f"### {data}", "", *commands(results.plan, f"pacgan/{data}"), "",
            *table(rows, METRICS_2D, reverse_kl, "GAN", paper, analysis)]


def best_stack_section(results: Results, data: str, reverse_kl: str, analysis: Analysis) -> list[str]:
    stage = results.plan["stages"].get(f"best_stack/{data}")
    if stage is None:
        return [f"### {data}", "", "(not run)"]
    stack, gains = stage.get("stack", []), stage.get("gains_on_choosing_seeds", {})
    runs = results.of(f"best_stack/{data}")
    stack_name = "+".join(stack) or BASELINE
    rows = renamed([r for r in runs if r.tricks == ["pac"] and pac_m(r) == 4], "PacGAN4")
    rows += renamed([r for r in runs if r.tricks == stack and "pac" not in r.tricks], f"stack: {stack_name}")
    if stack:
        rows += renamed([r for r in runs if not r.tricks], BASELINE)
    chosen = ", ".join(f"`{t}` {g:+.2f}" for t, g in sorted(gains.items(), key=lambda kv: -kv[1]))
    return [f"### {data}", "",
            f"Mean modes gained over the baseline in the add-one table (never seeds "
            f"{seeds_text(results.plan.get('reporting_seeds', range(5, 10)))}): {chosen or 'none measured'}. Stack: "
            f"every trick with a gain, largest first, each added while the stack still runs: **{stack_name}**. The "
            "stack itself never ran on the choosing seeds: choosing it assumes the tricks' gains add up.", "",
            *commands(results.plan, f"best_stack/{data}"), "",
            *table(rows, METRICS_2D, reverse_kl, "PacGAN4", (), analysis, untested=(BASELINE,))]


def curve_section(results: Results, figure: str) -> list[str]:
    runs = [r for r in results.of("curve") if r.status == "ok"]
    if not runs:
        return ["(not run)"]
    run = runs[0]
    points = {h["iteration"]: h for h in run.history}
    short = DATASETS["ring8"]
    first = min(points)
    at = lambda it, net, m: points[it].get(net, {}).get(m)  # noqa: E731
    lines = []
    for it in sorted({first, 2000, max(points)} & set(points)):
        raw, ema = at(it, "raw", "modes"), at(it, "ema", "modes")
        hq = at(it, "raw", "hq")
        lines.append(f"- iteration {it:,}: raw G {raw} modes, {100 * hq:.1f}% high quality; EMA G {ema} modes")
    return [*commands(results.plan, "curve"), "",
            f"![modes and HQ% of the baseline on ring8 against iterations, raw and EMA G]({figure})", "",
            f"One run (seed 0) of `experiment={short[0]}` to {run.iterations:,} iterations, evaluated every "
            f"{run.history[1]['iteration'] - run.history[0]['iteration']:,}. The short budget ends at 2,000 "
            f"(dashed line); the paper trains to {PAPER_BUDGET:,}, {PAPER_BUDGET // (run.iterations or 1)}x further "
            "than this curve goes.", "", *lines]


def slurm_section(results: Results) -> list[str]:
    """The commands of Table 1 at the paper's budget, and their compute: the learning-curve run's seconds per
    iteration (25,000 iterations: start-up weighs little) for GAN, and m times that for PacGANm (each update makes and
    judges m times the samples: an upper bound, for time limits that must not be too short); the short runs' measured
    ratio is shown beside it (their fixed costs pull it towards 1: a lower bound)."""
    curve = seconds_per_iteration(results.of("curve"))
    short = {}
    for data in DATASETS:
        short[data, 1] = seconds_per_iteration(gan_runs(results, data))
        for m in (2, 4):
            short[data, m] = seconds_per_iteration([r for r in results.of(f"pacgan/{data}") if pac_m(r) == m])
    if curve is None or any(v is None for v in short.values()):
        return ["(needs the pacgan and curve stages)"]
    rows, total, longest = [], 0.0, 0.0
    for data in DATASETS:
        for m in (1, 2, 3, 4):
            hours = m * curve * PAPER_BUDGET / 3600
            total, longest = total + 10 * hours, max(longest, hours)
            measured = ("–" if m == 1 else f"{short[data, m] / short[data, 1]:.2f}" if (data, m) in short
                        else "not run")
            rows.append([data, "GAN" if m == 1 else f"PacGAN{m}", f"{m * curve * 1000:.1f}", measured,
                         f"{hours:.1f}", f"{10 * hours:.0f}"])
    timeout = 60 * math.ceil(longest / 3)  # a third of the longest run per job: at most 3 requeues, a third to spare
    launch = f"hydra/launcher=slurm hydra.launcher.gpus_per_node=1 hydra.launcher.timeout_min={timeout}"
    return [
        "Table 1 at the paper's budget (400,000 iterations), 10 seeds, every packing degree, as a SLURM job array "
        "(`hydra/launcher=slurm`, hydra-submitit-launcher; one run per job; a job reaching its time limit writes "
        "its checkpoint and is requeued, and the requeued job resumes; add `hydra.launcher.partition=...` for the "
        "cluster's GPU partition):", "",
        "```bash",
        "python train.py -m experiment=pacgan_ring,pacgan_grid 'trick=[]' seed=0,1,2,3,4,5,6,7,8,9 \\",
        f"    {launch} hydra.sweep.dir=multirun/table1/gan",
        "python train.py -m experiment=pacgan_ring,pacgan_grid 'trick=[pac]' trick.pac.m=2,3,4 "
        "seed=0,1,2,3,4,5,6,7,8,9 \\",
        f"    {launch} hydra.sweep.dir=multirun/table1/pacgan",
        "python scripts/report.py multirun/table1/pacgan    # and multirun/table1/gan",
        "```", "",
        "Compute, estimated from this page's own runs, one CPU thread each (the curve ran as a third process beside "
        "two sweep jobs on this 2-core machine, so its time is high): the learning-curve run's wall time over its "
        "25,000 iterations (evaluations every 1,000, where the full preset evaluates every 20,000; start-up "
        f"included) for GAN, m times that for PacGANm, times {PAPER_BUDGET:,}; the grid's nets and batch are the "
        "ring's, so it takes the same base. m times is an upper bound (each update makes and judges m times the "
        "samples, but only D's first layer widens); the short runs' measured ratio, shown beside it, is a lower "
        "bound (their start-up and evaluations do not grow with m). No GPU was measured: budget these hours per "
        "job until `make bench` on the cluster says otherwise.", "",
        markdown_table(["data", "row", "ms per iteration", "measured ratio to GAN (short runs)", "hours per run",
                        "hours for 10 seeds"], rows),
        "", f"In all: at most **{total:,.0f} CPU-core hours** for the 80 runs; `timeout_min={timeout}` is a third of "
        f"the longest run ({longest:.1f} h): 3 requeues (the launcher's max_num_timeout) leave a third to spare.",
    ]


def stacked_section(results: Results, analysis: Analysis) -> list[str]:
    runs = results.of("stacked")
    if not runs:
        return ["(not run)"]
    packed = [r for r in runs if r.tricks == ["pac"]]
    rows = [r for r in runs if r.tricks != ["pac"]]
    rows += renamed(packed, f"pac (m={pac_m(packed[0])})") if packed else []
    paper = [[f"PacGAN paper, {name}, full budget", "10", "–", *values, ""] for name, values in PAPER_STACKED.items()]
    iterations = sorted({r.iterations for r in runs if r.status == "ok"})
    return [*commands(results.plan, "stacked"), "",
            f"`experiment=stacked_mnist_pacgan_short`: PacGAN's stacked MNIST protocol (DCGAN nets at 32 channels, "
            f"batch 64, Adam 2e-4 β1 0.5, 26,000 samples read by the domain MNIST classifier) for "
            f"{', '.join(map(str, iterations))} iterations instead of the paper's 100,000 (its 'full budget' rows: "
            "the scale, not a target), evaluated once at the end, the raw G only (`metrics.generators=primary`). The "
            "baseline has 10 seeds (0-4 and 10-14), every other cell 5. `lecam` starts after iteration 100 here (its "
            "reference start, 1,000, is past these runs). `r1` and `r2` run at their defaults, γ = 10 taken every 16 D "
            "updates (StyleGAN2's setting for FFHQ); StyleGAN2-ADA's setting for small images is far weaker (its "
            "`cifar` config: γ = 0.01 at 32x32 and batch 64; its `auto` rule 0.0002·resolution²/batch gives about "
            "0.003 here): these rows show the penalty at the large-image reference strength, not tuned to this data. "
            "`diffaugment` (colour, translation, cutout on every D input) and `consistency` (bCR: flip and shift, "
            "λ 10 on real and fake) run at their references' defaults.",
            "",
            *table(rows, METRICS_STACKED, "", BASELINE, paper, analysis)]


def plot_add_one(results: Results, out: Path) -> None:
    """Per data set and metric, every add-one cell's mean ± s.e. over seeds, the baseline's mean as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in DATASETS if results.of(f"add_one/{d}")]
    if not datasets:
        return
    fig, axes = plt.subplots(1, 2 * len(datasets), figsize=(5.5 * len(datasets), 5), sharey=False, squeeze=False)
    for i, data in enumerate(datasets):
        cells: dict[str, list[RunRecord]] = {}
        for r in sorted(results.of(f"add_one/{data}"), key=lambda r: r.job_num or 0):
            if r.status == "ok":
                cells.setdefault(r.cell_name, []).append(r)
        names = list(cells)
        for j, (metric, label) in enumerate((("modes", "modes"), ("hq", "HQ %"))):
            ax = axes[0][2 * i + j]
            s = [summarise([v for v in (primary_value(r, metric) for r in cells[c]) if v is not None]) for c in names]
            ax.errorbar([x.mean for x in s], range(len(names)), xerr=[0 if math.isnan(x.se) else x.se for x in s],
                        fmt="o", ms=4, capsize=2)
            if BASELINE in cells:
                ax.axvline(s[names.index(BASELINE)].mean, color="grey", ls="--", lw=1)
            ax.set_title(f"{data}: {label}")
            ax.set_yticks(range(len(names)), names, fontsize=8)
            ax.invert_yaxis()
            ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_curve(results: Results, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results.of("curve") if r.status == "ok"]
    if not runs:
        return
    history = runs[0].history
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (metric, label, scale) in zip(axes, (("modes", "modes (of 8)", 1), ("hq", "HQ %", 100))):
        for net in ("raw", "ema"):
            ax.plot([h["iteration"] for h in history], [scale * h[net][metric] for h in history], marker="o", ms=3,
                    label=f"{net} G")
        ax.axvline(2000, color="grey", ls="--", lw=1, label="short budget")
        ax.set_xlabel("iteration (the paper: 400,000)")
        ax.set_title(f"baseline, ring8: {label}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def table_data_text(results: Results) -> str:
    """The data sets the trick table (screen, add-one, best stack) ran on."""
    names = [d for d in DATASETS if f"add_one/{d}" in results.plan["stages"]]
    return " and ".join(names) or "no data set"


def render(results: Results, analysis: Analysis = Analysis()) -> str:
    everything = [r for runs in results.records.values() for r in runs]
    statuses = Counter(r.status for r in everything)
    reverse_kl = reverse_kl_text(everything)
    stage_times = {name: s.get("wall_seconds", 0.0) for name, s in results.plan["stages"].items()}
    out = [
        "# Results: GAN tricks, PacGAN and the modern regularisers on PacGAN's protocols (short budget)",
        "",
        "Generated by `make results` (scripts/make_results.py runs the sweeps below in order, then "
        "scripts/results_table.py writes this page and `docs/results_records.json.gz`, the records it was made "
        "from); do not edit by hand. tests/test_results_doc.py renders the archive and requires this page.",
        "",
        f"{len(everything)} runs ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}) in "
        f"**{minutes(results.plan.get('wall_seconds', 0.0))}** of wall time on 2 CPU cores (two runs at a time, one "
        "thread each; the learning curve's run beside them). Per stage: "
        + ", ".join(f"{name} {minutes(t)}" for name, t in stage_times.items()) + ".",
        "",
        "## What the short budget can and cannot show",
        "",
        "The presets `pacgan_ring_short` and `pacgan_grid_short` are PacGAN's 2-D protocol as the authors' code runs "
        "it (tests/test_pacgan_reference.py steps the framework beside a plain re-implementation of their update): "
        "simultaneous updates of G and D from one batch, N(0, 0.02) weights, batch norm with eps 1e-4 and momentum "
        "0.05, a new 100k-point data set per seed taken in shuffled epochs, Adam 1e-4 β1 0.8, batch 100; evaluation "
        f"on 2,500 samples, high quality within 3σ of a mode, reverse KL of {reverse_kl}. They differ in the budget "
        f"only: **2,000 iterations (ring) and 500 (grid) instead of {PAPER_BUDGET:,}**. The paper's rows give the "
        "scale, not a target; what means something is the comparison between rows of one table (same budget, same "
        "seeds). Whether a trick that helps at 2,000 iterations still helps at 400,000 is what this page cannot "
        "say; the learning curve shows how far from converged the short runs are.",
        "",
        "A cell's runs are its seeds. A run that diverged or failed counts as the worst value any run of its table "
        "reached (so does, in PacGAN's reverse KL, a run without a high-quality sample). `failure rate`: runs that "
        "diverged, failed or collapsed to at most one mode, with the 95% Wilson interval. A call (better / worse) "
        "needs an exact permutation test of the difference to the table's reference cell with p < 0.05 after "
        f"{ADJUSTMENT_NAMES[analysis.adjust]} adjustment over every comparison of the table (each metric of each "
        "cell). With 5 seeds a side the smallest p a permutation test can reach is 0.008, so a table of many "
        "comparisons calls only large, consistent differences; no call is not evidence of no effect.",
        "",
        "Baseline + every trick x 2 data sets x 5 seeds (about 260 runs) does not fit 2 hours on 2 cores, so the "
        f"2-D trick table runs on {table_data_text(results)} only (grid25's short baseline leaves most of its 25 modes to gain, "
        "where ring8's covers nearly all of its 8: see the GAN rows; and its 500-iteration run costs a quarter of "
        "ring8's), and is "
        "screened first: a Plackett-Burman design over the tricks that can run on the preset "
        "(one seed), then the add-one table (5 seeds) over the tricks the screen keeps and the two it does not "
        "screen because they cost too much beside half the others (`capacity`, `minibatch_discrimination`). A "
        "screen with each trick on in half the cells, beside ten others, measures a trick among other tricks, not "
        "alone: a trick it drops may still help alone.",
        "",
        "Tricks never on the 2-D tables:",
        "",
        *[f"- `{name}` is left out: {why}" for name, why in LEFT_OUT.items()],
        "",
        "## PacGAN's rows: GAN, PacGAN2, PacGAN4",
        "",
        "The GAN row is the baseline on seeds 0-4 and 10-14 (on the trick table's data set, the add-one table's "
        "baseline); PacGAN2 and PacGAN4 add `trick=[pac]` with m = 2 and 4 on the same preset, seeds 0-4. Calls "
        "are against GAN.",
    ]
    for data in DATASETS:
        if results.of(f"pacgan/{data}"):
            out += ["", *pacgan_section(results, data, reverse_kl, analysis)]
    out += ["", "## Screening the 2-D tricks"]
    for data in DATASETS:
        if f"screen/{data}" in results.plan["stages"]:
            out += ["", *screen_section(results, data)]
    out += ["", "## Add-one: each kept trick alone on the baseline", "",
            "![modes and HQ% per add-one cell, mean ± s.e. over seeds; dashed: the baseline](results.png)", "",
            "Each trick runs with its catalogue defaults (`gan_ablate/conf/trick/<name>.yaml`) on top of the preset, "
            "seeds 0-4; the baseline, every call's reference, also on seeds 10-14 (5 + 10 runs let a permutation test "
            "reach p = 0.0007, which survives a Holm adjustment over the table; 5 + 5 reach only 0.008). `acgan` "
            "and `conditional` read the class labels, which are the very modes the metrics count: they run, and are "
            "set apart."]
    for data, (preset, n_modes) in DATASETS.items():
        runs = results.of(f"add_one/{data}")
        if runs:
            out += ["", f"### {data} (`experiment={preset}`, {n_modes} modes)", "",
                    *commands(results.plan, f"add_one/{data}"), "", *table(runs, METRICS_2D, reverse_kl,
                                                                           analysis=analysis)]
    out += ["", "## Best stack vs PacGAN4 at equal budget", "",
            "A stack of tricks chosen on the add-one table's runs and reported on seeds 5-9, which the choice never "
            "saw, against `pac` m=4 on the same seeds 5-9; the calls test the stack against PacGAN4 only (the "
            "baseline on seeds 5-9 is shown, to see whether the stack's gain survives new seeds). Same preset, same "
            "iterations: equal budget in iterations (PacGAN4's D sees 4x the samples per step, as in the paper)."]
    for data in DATASETS:
        if f"best_stack/{data}" in results.plan["stages"]:
            out += ["", *best_stack_section(results, data, reverse_kl, analysis)]
    out += ["", "## The modern regularisers on stacked MNIST", "", *stacked_section(results, analysis)]
    out += ["", "## Learning curve: where the short budget sits", "", *curve_section(results, "learning_curve.png")]
    out += ["", "## Table 1 at the paper's full budget on a SLURM cluster", "", *slurm_section(results)]
    out += ["", "## On a GPU", "",
            "Not measured: no GPU was available where this page was made. `make bench` on a GPU machine prints "
            "GANModule vs the plain loop (mnist/DCGAN) and `python scripts/bench_metrics.py` the seconds per FID "
            "evaluation; their figures belong here with the device's name."]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the folder `make results` wrote, or a records archive (.json.gz)")
    parser.add_argument("--out", type=Path, help="write the page here, its figures and (from a folder) the records "
                                                 f"archive, {ARCHIVE.name}, beside it (default: print the page)")
    parser.add_argument("--adjust", choices=("holm", "bh", "none"), default="holm",
                        help="multiplicity adjustment over each table's comparisons (default Holm)")
    parser.add_argument("--failed-as", choices=("worst", "exclude"), default="worst",
                        help="diverged and failed runs as the worst value of the table (default) or left out")
    args = parser.parse_args()
    try:
        if args.source.is_dir():
            results = Results.from_folder(args.source)
        elif args.source.is_file():
            results = Results.from_archive(args.source)
        else:
            sys.exit(f"results_table: {args.source} does not exist; run `make results` first")
    except NewerRecord as e:
        sys.exit(f"results_table: {e}")
    if not any(results.records.values()):
        sys.exit(f"results_table: no result.json under {args.source}; run `make results` first")
    text = render(results, Analysis(adjust=args.adjust, failed_as=args.failed_as))
    if args.out:
        args.out.write_text(text)
        plot_add_one(results, args.out.with_name("results.png"))
        plot_curve(results, args.out.with_name("learning_curve.png"))
        if args.source.is_dir():
            results.write_archive(args.out.with_name(ARCHIVE.name))
        print(f"wrote {args.out} and its figures from {sum(map(len, results.records.values()))} runs")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
