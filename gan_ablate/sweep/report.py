"""The ablation report of a sweep folder: tables (how each cell's runs ended, with the failure rate and
its Wilson interval; per metric the mean, s.e. and 95% CI over runs, the difference to the reference
cell with its exact permutation p, adjusted over the table; for a factorial, fractional, screening or
plain trick sweep the effects of each trick and two-way interaction, see effects.py), plots (metric per
cell, ranked effects, interaction map, training curves, last samples per cell), written as report.md and report.html next to the PNGs. Reads only result.json
files and each run's csv/metrics.csv, so it works on a sweep that is still running."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from gan_ablate.metrics.directions import REVERSE_KL_DEFINITIONS, reverse_kl_definition
from gan_ablate.record import METRIC_DIRECTIONS, RunRecord, load_records
from gan_ablate.sweep import effects
from gan_ablate.sweep.aggregate import (ADJUSTMENT_NAMES, ALPHA, EXACT_RELABELLINGS, Analysis, Cell, compare,
                                       group_cells, is_reference, metric_names, reference_of, runs_text, summarise,
                                       tested, with_failures, worst_value)

CURVES = {"losses": ("loss/d", "loss/g"), "gradient norms": ("grad_norm/d", "grad_norm/g")}


def fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Report:
    title: str
    summary: str
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, file name)
    notes: list[str] = field(default_factory=list)  # warnings and legends, shown above the tables


def metric_samples(metric: str, net: str, cells: dict[str, Cell], analysis: Analysis):
    """Per cell, the values of `metric` of the `net` generator its finished runs reached, and the values a
    table summarises (with failures as `analysis` says); the table's worst value, and whether it was imputed."""
    finished = {name: cell.values(net, metric) for name, cell in cells.items()}
    worst = worst_value([v for values in finished.values() for v in values], METRIC_DIRECTIONS.get(metric, 0))
    samples = {name: with_failures(finished[name], cell.n_failed(), worst, analysis) for name, cell in cells.items()}
    return finished, samples, worst, analysis.failed_as == "worst" and worst is not None


def failures_text(worst: Optional[float], imputed: bool) -> str:
    return (f"a diverged or failed run counts as the worst value of this table ({fmt(worst)})" if imputed
            else "finished runs of all that ended (diverged and failed runs are left out)")


def metric_name(metric: str, cells: dict[str, Cell]) -> str:
    """`metric` as tables and figures name it: reverse_kl with the histogram its runs took it of (metrics.reverse_kl
    has two definitions)."""
    if metric != "reverse_kl":
        return metric
    found = sorted({reverse_kl_definition(r.config) for cell in cells.values() for r in cell.records})
    return (f"{metric} [{' / '.join(REVERSE_KL_DEFINITIONS[d] for d in found)}"
            + (": MIXED, not comparable]" if len(found) > 1 else "]"))


def metric_table(metric: str, net: str, cells: dict[str, Cell], reference: Optional[str] = None,
                 analysis: Analysis = Analysis()) -> Optional[Table]:
    """One row per cell: `metric` of the `net` generator (raw or ema) over its runs, and the cell's
    comparison with its reference, adjusted over every comparison of this table."""
    direction = METRIC_DIRECTIONS.get(metric, 0)
    better = {1: "higher is better", -1: "lower is better"}.get(direction, "")
    finished, samples, worst, imputed = metric_samples(metric, net, cells, analysis)
    rows, pairs, compared = [], [], []
    for cell in cells.values():
        values = samples[cell.name]
        if not values:
            continue
        s = summarise(values)
        ci = "–" if math.isnan(s.ci_low) else f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]"
        ref = reference_of(cell, cells, reference)
        if ref is None or ref is cell:
            comparison = ["reference" if ref is cell else "–", "", "", ""]
        elif cell.set_apart():
            comparison = ["", "", "", "set apart (see 'Cells set apart')"]  # no call, whatever its numbers
        else:
            comparison = []  # filled in once the whole table's p-values are adjusted together
            pairs.append((values, samples[ref.name]))
            compared.append(len(rows))
        rows.append([cell.name, runs_text(len(finished[cell.name]), cell.n_failed(), imputed),
                     fmt(s.mean), fmt(s.se), ci] + comparison)
    if not rows:
        return None
    comparisons = compare(pairs, analysis)
    for i, c in zip(compared, comparisons):
        call = c.call(direction) or ("n too small" if c.too_few_runs() else "")
        rows[i] += [fmt(c.diff), fmt(c.p), fmt(c.p_adjusted), call]
    adjusted = ADJUSTMENT_NAMES[analysis.adjust]
    family = (f"adjusted p: {adjusted} over the {tested(comparisons)} comparisons of this table"
              if analysis.adjust != "none"
              else "p not adjusted for the other comparisons of this table")
    note = ((f"{better}; " if better else "")
            + "Δ: mean of the cell minus its reference's; p: exact permutation test of that difference (every "
            f"relabelling of the runs up to {EXACT_RELABELLINGS:,}); {family}; 'better'/'worse' where the "
            f"adjusted p < {ALPHA}, 'n too small' where no relabelling of so few runs can reach it; runs: "
            + failures_text(worst, imputed))
    return Table(f"{metric_name(metric, cells)} ({net} G)",
                 ["cell", "runs", "mean", "s.e.", "95% CI", "Δ vs reference", "p", f"adjusted p ({adjusted})", "call"],
                 rows, note)


def effects_of(metric: str, net: str, cells: dict[str, Cell], factorial: list[Cell],
               analysis: Analysis) -> Optional[effects.Effects]:
    """The effects of the tricks over the `factorial` cells, on the values `metric_table` summarises."""
    if not factorial:
        return None
    _, samples, _, _ = metric_samples(metric, net, cells, analysis)
    return effects.fit_effects(factorial, samples, analysis.adjust)


def effects_table(metric: str, net: str, fit: effects.Effects, cells: dict[str, Cell], factorial: list[Cell],
                  analysis: Analysis) -> Table:
    """One row per fitted term (main effects, then two-way interactions) with the model named in the note."""
    if fit.not_fitted:
        return Table(f"Effects on {metric_name(metric, cells)} ({net} G)", ["term"], [],
                     f"no effects: {fit.not_fitted}")
    direction = {1: "higher is better", -1: "lower is better"}.get(METRIC_DIRECTIONS.get(metric, 0))
    adjusted = ADJUSTMENT_NAMES[analysis.adjust]
    rows = [[t.name, fmt(t.effect), "–" if math.isnan(t.ci_low) else f"[{fmt(t.ci_low)}, {fmt(t.ci_high)}]",
             fmt(t.p), fmt(t.p_adjusted), " = ".join([t.name] + t.aliases) if t.aliases else ""] for t in fit.terms]
    interactions = any(t.is_interaction for t in fit.terms)
    block = f" + block (the variant: {', '.join(fit.blocks)})" if fit.blocks else ""
    intervals = (f"no intervals or p: {fit.no_intervals}" if fit.no_intervals else
                 f"95% CI and p: t on the {fit.df_resid} residual degrees of freedom, assuming normal errors of "
                 "equal variance in every cell")
    family = (f"adjusted p: {adjusted} over the {len(fit.terms)} terms of this table" if analysis.adjust != "none"
              else "p not adjusted for the other terms of this table")
    _, _, worst, imputed = metric_samples(metric, net, cells, analysis)
    notes = [f"OLS over {fit.n_runs} runs (seeds are replicates): {metric} ~ mean + main effects"
             + (" + two-way interactions" if interactions else "") + block,
             "coding: each trick -1 (off) / +1 (on), an interaction the product of its tricks' codes; effect = "
             "mean at +1 minus mean at -1 = 2 × the coefficient" + (f" ({direction})" if direction else ""),
             intervals, family,
             "aliases: terms whose columns are the same over these cells ('-': negated), so the effect is of "
             "their sum (or difference) and the design cannot tell them apart",
             fit.interactions_left_out,
             f"not estimable (aliased with the mean): {', '.join(fit.not_estimable)}" if fit.not_estimable else "",
             f"cells set apart, left out of the fit: {', '.join(sorted(set(cells) - {c.name for c in factorial}))}"
             if len(factorial) < len(cells) else "",
             "runs: " + failures_text(worst, imputed)]
    return Table(f"Effects on {metric_name(metric, cells)} ({net} G)",
                 ["term", "effect (+1 minus -1)", "95% CI", "p", f"adjusted p ({adjusted})", "aliases"], rows,
                 "; ".join(n for n in notes if n))


def outcome_table(cells: dict[str, Cell], analysis: Analysis) -> Optional[Table]:
    """Per cell, how its runs ended: a trick that kills 2 of 5 seeds shows it here, whatever its means."""
    found = {name: cell.outcomes(analysis.collapsed_modes) for name, cell in cells.items()}
    if not any(o.runs for o in found.values()):
        return None
    with_modes = any(o.collapsed is not None for o in found.values())
    collapsed = f"collapsed (modes ≤ {analysis.collapsed_modes:g})"
    rows = [[name, str(o.runs), str(o.ok), str(o.diverged), str(o.failed)]
            + ([str(o.collapsed or 0)] if with_modes else [])
            + [f"{o.bad}/{o.runs} = {fmt(o.rate)} [{fmt(o.rate_low)}, {fmt(o.rate_high)}]" if o.runs else "–"]
            for name, o in found.items()]
    what = "diverged, failed or collapsed" if with_modes else "diverged or failed"
    return Table("Outcomes per cell",
                 ["cell", "runs", "ok", "diverged", "failed"] + ([collapsed] if with_modes else [])
                 + ["failure rate [95% Wilson]"], rows,
                 f"runs: those that ended (running and skipped ones are not counted); failure rate: {what} runs "
                 "over runs, with its 95% Wilson interval"
                 + (f"; collapsed: finished with its judged generator covering at most {analysis.collapsed_modes:g} "
                    "mode(s) (--collapsed-modes)" if with_modes else ""))


def analysis_note(analysis: Analysis) -> str:
    adjusted = (f"p-values adjusted with {ADJUSTMENT_NAMES[analysis.adjust]} over the comparisons of each table"
                if analysis.adjust != "none" else "p-values not adjusted for multiplicity (--adjust none)")
    failures = ("diverged and failed runs count as the worst value of their table (--failed-as worst, the "
                "default: leaving them out would judge a trick only on the seeds it survived)"
                if analysis.failed_as == "worst" else
                "diverged and failed runs are left out of the metrics (--failed-as exclude: the metrics describe "
                "the runs that finished; 'Outcomes per cell' counts the others)")
    return f"Comparisons: exact permutation tests, {adjusted}; {failures}"


def evaluation_noise_table(records: list[RunRecord], cells: dict[str, Cell]) -> Optional[Table]:
    """Per metric and G, the spread of one evaluation split into evaluation noise (between the latent sets of
    metrics.eval_repeats, one G) and training noise (between the runs of a cell): gan_ablate/sweep/variance.py."""
    from gan_ablate.sweep.variance import repeated_values, split_noise

    rows = []
    for metric in metric_names(records):
        for net in ("raw", "ema"):
            found = split_noise(repeated_values({name: c.records for name, c in cells.items()}, net, metric))
            if found:
                rows.append([metric, net, str(found.cells), str(found.runs), str(found.evaluations),
                             fmt(found.within_sd), fmt(found.between_sd), fmt(found.training_share)])
    if not rows:
        return None
    return Table("Evaluation noise vs training noise",
                 ["metric", "G", "cells", "runs", "evaluations", "within-run SD (evaluation)",
                  "between-seed SD (training)", "share of variance from training"], rows,
                 "from the final G's eval_repeats (metrics.eval_repeats latent sets per run): a one-way random-effects "
                 "split per cell (runs as groups), ANOVA estimators (Searle, Casella & McCulloch 1992, ch. 3), "
                 "cells pooled as fixed blocks; share: between-seed variance over the variance of one evaluation "
                 "about its cell's mean")


DESIGN_LEGENDS = {
    "add_one": "add_one: 'baseline' is the baseline tricks alone, '+x' adds trick x to them",
    "leave_one_out": "leave_one_out: 'all' has every trick under study, '-x' all of them but x",
    "factorial": "factorial: every subset of the tricks under study",
    "explicit": "explicit: the listed combinations, compared with the first",
}


def cells_set_apart(cells: dict[str, Cell]) -> Optional[Table]:
    rows = [[c.name, why] for c in cells.values() if not is_reference(c) and (why := c.set_apart())]
    if not rows:
        return None
    return Table("Cells set apart", ["cell", "why"], rows,
                 "their numbers are shown but not compared: they are no evidence for or against the trick")


def runs_without_results(records: list[RunRecord]) -> Optional[Table]:
    rows = []
    for r in records:
        if r.status != "ok":
            # records written before diverged runs had a reason keep it in their non_finite flag
            flagged = [f["detail"] for f in r.failure_flags if f.get("flag") == "non_finite"]
            reason = r.reason or r.error or r.note or "".join(flagged[:1])
            if r.diverged_at_iteration is not None:
                stopped = "?" if r.iterations is None else r.iterations
                reason += f" (first at iteration {r.diverged_at_iteration}, stopped at {stopped})"
            where = r.run_dir.name if r.run_dir else ""
            rows.append([r.cell or r.name, "" if r.seed is None else str(r.seed), r.status or "?", reason, where])
    if not rows:
        return None
    return Table("Runs without results", ["cell", "seed", "status", "reason", "folder"], rows,
                 "running: not finished yet (or stopped: start the sweep again to resume it); diverged: a loss "
                 "or gradient norm became NaN or Inf, and the run stopped soon after")


def build_report(sweep_dir: Path, reference: Optional[str] = None, plots: bool = True,
                 analysis: Analysis = Analysis()) -> Report:
    """The report of the result.json records under `sweep_dir`; plots go to `sweep_dir`/report/."""
    sweep_dir = Path(sweep_dir)
    records = load_records(sweep_dir)
    if not records:
        raise FileNotFoundError(f"no result.json under {sweep_dir}")
    return report_of(records, str(sweep_dir), sweep_dir / "report" if plots else None, reference, analysis)


def report_of(records: list[RunRecord], source: str, plot_dir: Optional[Path] = None,
              reference: Optional[str] = None, analysis: Analysis = Analysis()) -> Report:
    """The report of any records (local result.json files, or runs read from W&B)."""
    cells = group_cells(records)
    statuses = sorted({r.status or "?" for r in records})
    design = sorted({r.design for r in records if r.design})
    report = Report(
        title=f"Ablation report: {source}",
        summary=f"{len(records)} runs in {len(cells)} cells" + (f" (design: {', '.join(design)})" if design else "")
        + "; " + ", ".join(f"{s} {sum(r.status == s for r in records)}" for s in statuses),
    )
    extractors = sorted({str(r.extractor_id or r.extractor) for r in records if r.status == "ok"})
    if len(extractors) > 1:
        report.notes.append(f"**Warning**: runs measured with different extractors ({', '.join(extractors)}): "
                               "their numbers are not comparable")
    report.notes += [DESIGN_LEGENDS[d] for d in design if d in DESIGN_LEGENDS]
    report.notes.append(analysis_note(analysis))
    metrics = metric_names(records)
    primary = next((r.primary for r in records if r.primary), "raw")
    nets = [primary] + [n for n in ("raw", "ema") if n != primary]
    report.tables = [t for t in (outcome_table(cells, analysis),) if t]
    # cells set apart are no evidence for or against their tricks: left out of the effects, not only uncalled
    factorial = [c for c in cells.values() if not c.set_apart()] if effects.applies(records) else []
    fits: dict[str, dict[str, effects.Effects]] = {}
    for m in metrics:
        report.tables += [t for n in nets if (t := metric_table(m, n, cells, reference, analysis))]
        found = {n: fit for n in nets if (fit := effects_of(m, n, cells, factorial, analysis))}
        report.tables += [effects_table(m, n, fit, cells, factorial, analysis) for n, fit in found.items()]
        fits[m] = {n: fit for n, fit in found.items() if fit.terms}
    report.tables += [t for t in (cells_set_apart(cells), runs_without_results(records)) if t]
    report.tables += [t for t in (evaluation_noise_table(records, cells),) if t]
    if plot_dir is not None:
        from gan_ablate.sweep import report_plots

        out = Path(plot_dir)
        out.mkdir(parents=True, exist_ok=True)
        for m in metrics:
            report.figures.append((f"{metric_name(m, cells)} per cell (mean and 95% CI over the finished runs; dots "
                                   "are runs)",
                                   report_plots.metric_per_cell(cells, m, out)))
        for m, by_net in fits.items():
            if by_net:
                report.figures.append((f"effects on {m}, ranked by size, with 95% intervals (see 'Effects on {m}')",
                                       report_plots.effect_plot(by_net, m, out)))
            path = report_plots.interaction_map(by_net, m, out)
            if path:
                report.figures.append((f"two-way interaction effects on {m} (aliased pairs marked '=')", path))
        for title, keys in CURVES.items():
            path = report_plots.training_curves(cells, keys, title, out)
            if path:
                report.figures.append((f"{title} during training (mean over seeds)", path))
        path = report_plots.evaluation_curves(cells, metrics, out)
        if path:
            report.figures.append(("evaluation metrics during training (raw G, mean over seeds)", path))
        path = report_plots.last_samples(cells, out)
        if path:
            report.figures.append(("last samples of each cell (first seed that has them)", path))
    return report


def to_markdown(report: Report, image_prefix: str = "report/") -> str:
    lines = [f"# {report.title}", "", report.summary, ""]
    lines += [f"- {w}" for w in report.notes] + ([""] if report.notes else [])
    for t in report.tables:
        lines += [f"## {t.title}", ""] + ([f"_{t.note}_", ""] if t.note else [])
        lines += ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
        lines.append("")
    if report.figures:
        lines += ["## Plots", ""]
        for caption, path in report.figures:
            lines += [f"![{caption}]({image_prefix}{Path(path).name})", "", f"_{caption}_", ""]
    return "\n".join(lines)


def to_html(report: Report, image_prefix: str = "report/") -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
             "margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}.note{color:#666}</style></head><body>",
             f"<h1>{e(report.title)}</h1><p>{e(report.summary)}</p>"]
    parts += [f"<p>{e(w)}</p>" for w in report.notes]
    for t in report.tables:
        parts.append(f"<h2>{e(t.title)}</h2>" + (f"<p class='note'>{e(t.note)}</p>" if t.note else ""))
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in t.header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in t.rows]
        parts.append("</table>")
    if report.figures:
        parts.append("<h2>Plots</h2>")
        for caption, path in report.figures:
            parts.append(f"<figure><img src='{e(image_prefix + Path(path).name)}' alt='{e(caption)}'>"
                         f"<figcaption>{e(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(sweep_dir: Path, reference: Optional[str] = None, analysis: Analysis = Analysis()) -> Report:
    report = build_report(sweep_dir, reference, analysis=analysis)
    (Path(sweep_dir) / "report.md").write_text(to_markdown(report) + "\n")
    (Path(sweep_dir) / "report.html").write_text(to_html(report))
    return report
