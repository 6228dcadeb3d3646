#!/usr/bin/env python
"""`make results`: the sweeps behind docs/results.md, in order, then the page (scripts/results_table.py).

    make results                                          # every stage (under 2 h on 2 cores), then the page
    python scripts/make_results.py --dir multirun/results # the same; run it again after a stop: it goes on
    python scripts/make_results.py --dir D --stages screen,add_one   # some stages only

Baseline + every trick x 2 data sets x 5 seeds does not fit 2 hours on 2 CPU cores (about 260 runs), so the
trick table runs on one 2-D data set (TABLE_DATA: grid25, whose short baseline leaves most of its 25 modes to gain
where ring8's covers nearly all of its 8, and whose run costs a quarter of ring8's), is screened first (issue 11's screening
design), and the seeds that choose a stack are not the seeds that report it:

  screen      on TABLE_DATA, a Plackett-Burman screening design over the tricks that can run there (1 seed)
  add_one     on TABLE_DATA, the baseline, each trick the screen keeps, the two costly tricks it does not
              screen, and the tricks that read the mode labels (set apart on the page), added alone, seeds 0-4
  pacgan      per 2-D data set, PacGAN2 and PacGAN4 (trick=[pac], m 2 and 4), seeds 0-4; the GAN row is add_one's
              baseline (same preset, same seeds), run here for a data set without the trick table
  stacked     stacked MNIST (short): baseline, pac, r1, r2, diffaugment, consistency and lecam, seeds 0-4
  best_stack  on TABLE_DATA, the stack chosen on add_one's seeds 0-4, the baseline and pac m=4, seeds 5-9
  curve       the baseline on ring8 to 25,000 iterations, 1 seed: where the short budget sits (beside the others)

Every stage is one or more `python train.py -m ...` commands, written to <dir>/plan.json with what the screen
kept, the stack chosen and each stage's wall time; the page prints them. A finished run is not trained again:
re-running a stage in its folder only trains what is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# the page's definitions (what the 2-D tables leave out, how a cell's runs are counted) are the pipeline's too
from results_table import LEFT_OUT, cell_samples, runs_by_cell  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"ring8": "pacgan_ring_short", "grid25": "pacgan_grid_short"}
N_MODES = {"ring8": 8, "grid25": 25}
# the data sets of the screen, add-one and best-stack tables (the 2-hour budget holds one; see the docstring)
TABLE_DATA = ("grid25",)
STACKED = "stacked_mnist_pacgan_short"
STAGES = ("screen", "add_one", "pacgan", "stacked", "best_stack", "curve")
CHOOSING_SEEDS = range(0, 5)   # add_one and pacgan; the stack is chosen on these
REPORTING_SEEDS = range(5, 10)  # best_stack: the chosen stack is reported on these, unseen by the choice
# the reference cells (add-one's and stacked MNIST's baseline) get 5 more seeds: at 5 + 5 the smallest permutation p
# is 2/252, which a Holm adjustment over a table's comparisons lifts past 0.05; at 5 + 10 it is 2/3003
EXTRA_BASELINE_SEEDS = range(10, 15)
KEEP_AT_MOST = 4                # tricks the screen passes on per data set: the add-one table's budget
PAC_M = (2, 4)
CURVE_ITERATIONS, CURVE_EVERY = 25_000, 1_000
# stacked MNIST (short) runs 500 iterations: lecam's reference start (1,000) would never act; the page says so
LECAM_START_SHORT = 100
STACKED_CELLS = ([], ["pac"], ["r1"], ["r2"], ["diffaugment"], ["consistency"])
# evaluation changes no training (tests/test_end_to_end.py); the table reads the last one of the primary (raw) G only:
# 26,000 samples once, of one G (scoring the EMA G too would add about 70 s to each 2-minute run)
STACKED_EVAL = ["metrics.every=500", "metrics.generators=primary"]
LAUNCH = ["logger=csv", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
# --smoke: every stage's plumbing in minutes (a few iterations, 2 + 2 seeds): for trying the pipeline, never the page
SMOKE = ["trainer.max_steps=120", "metrics.every=60", "checkpoint.every=60", "metrics.n_samples=500",
         "metrics.stacked_samples=1000"]
EXTRA: list[str] = []  # appended to every command (--smoke)

# tricks that read the class labels, which are the mode labels the 2-D metrics count: run, but set apart
LABEL_READING = ("acgan", "conditional")
# no screening cell can hold two tricks that conflict (each turns on about half of them): of each such pair the
# screen keeps the first, and the second is left out of the 2-D tables
SCREEN_KEEPS_OVER = {"g_history": "experience_replay", "one_sided_label_smoothing": "label_smoothing"}
# each costs 2-3x a baseline run (300 iterations of pacgan_ring_short beside each other trick alone: capacity 83 s,
# minibatch_discrimination 75 s, the others 22-36 s); in a screening cell they are on together with half the others,
# which made a cell up to 20x slower: they skip the screen and go to the add-one table directly
COSTLY = ("capacity", "minibatch_discrimination")


def catalogue() -> list[str]:
    return sorted(p.stem for p in (ROOT / "gan_ablate" / "conf" / "trick").glob("*.yaml"))


def refusal(overrides: list[str]) -> str | None:
    """The one-line reason train.py would refuse these overrides before training, or None."""
    from gan_ablate.cli import compose_config
    from gan_ablate.config import ConfigError
    from gan_ablate.validation import check_config

    try:
        check_config(compose_config(overrides + EXTRA))
    except ConfigError as e:
        return str(e)
    return None


def screen_candidates(data: str) -> tuple[list[str], dict[str, str]]:
    """The tricks the screen on `data` runs, and every other trick of the catalogue with why it is not screened."""
    out_of_2d = LEFT_OUT
    screened, why_not = [], {}
    for trick in catalogue():
        if trick in out_of_2d:
            why_not[trick] = out_of_2d[trick]
        elif trick in LABEL_READING:
            why_not[trick] = ("it reads the class labels, which are the modes the metrics count: it runs in the "
                              "add-one table, set apart, not in the screen")
        elif trick in COSTLY:
            why_not[trick] = ("it costs 2-3x a baseline run, more beside half the other tricks: it skips the screen "
                              "and runs in the add-one table directly")
        elif trick in SCREEN_KEEPS_OVER:
            other = SCREEN_KEEPS_OVER[trick]
            why_not[trick] = (f"it conflicts with `{other}`, which the screen runs, and a screening cell turns on "
                              "about half the tricks at once")
        elif (reason := refusal([f"experiment={PRESETS[data]}", f"trick=[{trick}]"])) is not None:
            why_not[trick] = f"refused on this preset: {reason}"
        else:
            screened.append(trick)
    return screened, why_not


def screen_effects(records) -> dict[str, float]:
    """Each screened trick's main effect on the modes covered (mean with it on minus mean with it off, over the
    Plackett-Burman cells; least squares through gan_ablate.sweep.effects, as the report fits it)."""
    from gan_ablate.sweep.aggregate import group_cells
    from gan_ablate.sweep.effects import fit_effects

    cells = group_cells([r for r in records if r.status != "skipped"])
    samples, _ = cell_samples(runs_by_cell(records), "modes")
    fit = fit_effects(list(cells.values()), {name: samples.get(c.label, []) for name, c in cells.items()}, "holm")
    if fit is None or fit.not_fitted:
        return {}
    return {t.name: t.effect for t in fit.terms if not t.is_interaction}


def kept_by_screen(effects: dict[str, float], at_most: int = KEEP_AT_MOST) -> list[str]:
    """The tricks whose screened main effect on modes is positive, largest first (equal effects, which least squares
    leaves apart by rounding error only, in name order), at most `at_most`."""
    rounded = {t: round(e, 9) for t, e in effects.items()}
    better = sorted((t for t, e in rounded.items() if e > 0), key=lambda t: (-rounded[t], t))
    return better[:at_most]


def add_one_tricks(kept: list[str]) -> list[str]:
    """The add-one table's tricks: what the screen kept, the costly tricks it did not screen, the label readers."""
    return kept + [t for t in COSTLY if t not in kept] + list(LABEL_READING)


def choose_stack(records, data: str) -> tuple[list[str], dict[str, float]]:
    """The stack for best_stack, chosen on add_one's runs (never seeds 5-9): every trick, not set apart, whose mean
    modes beats the baseline's, in order of its gain (ties: HQ), each added while the stack still runs on the
    preset (no conflict, nothing refused). Also each trick's gain, for the page."""
    from gan_ablate.record import BASELINE
    from gan_ablate.sweep.aggregate import set_apart_reason

    by_cell = runs_by_cell([r for r in records if r.seed not in REPORTING_SEEDS])
    (modes, _), (hq, _) = cell_samples(by_cell, "modes"), cell_samples(by_cell, "hq")
    if BASELINE not in modes:
        return [], {}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    gains = {}
    for cell, runs in by_cell.items():
        if cell == BASELINE or cell not in modes or set_apart_reason(runs):
            continue
        gains[runs[0].tricks[0]] = (mean(modes[cell]) - mean(modes[BASELINE]), mean(hq[cell]) - mean(hq[BASELINE]))
    stack: list[str] = []
    for trick in sorted((t for t, g in gains.items() if g[0] > 0), key=lambda t: (-gains[t][0], -gains[t][1])):
        if refusal([f"experiment={PRESETS[data]}", f"trick=[{','.join(stack + [trick])}]"]) is None:
            stack.append(trick)
    return stack, {t: g[0] for t, g in gains.items()}


def seeds(values) -> str:
    return "seed=" + ",".join(map(str, values))


def tricks_arg(tricks: list[str]) -> str:
    return f"[{','.join(tricks)}]"


def screen_command(data: str, tricks: list[str], out: Path) -> list[str]:
    return ["-m", "hydra/sweeper=ablation", f"experiment={PRESETS[data]}", f"ablation.tricks={tricks_arg(tricks)}",
            "ablation.design=screening", "ablation.seeds=1", *LAUNCH, *EXTRA, f"hydra.sweep.dir={out}"]


def add_one_commands(data: str, tricks: list[str], out: Path) -> list[list[str]]:
    return [["-m", "hydra/sweeper=ablation", f"experiment={PRESETS[data]}", f"ablation.tricks={tricks_arg(tricks)}",
             "ablation.design=add_one", f"ablation.seeds={len(CHOOSING_SEEDS)}", *LAUNCH, *EXTRA,
             f"hydra.sweep.dir={out / 'cells'}"],
            ["-m", f"experiment={PRESETS[data]}", "trick=[]", seeds(EXTRA_BASELINE_SEEDS), *LAUNCH, *EXTRA,
             f"hydra.sweep.dir={out / 'baseline_more_seeds'}"]]


def pacgan_commands(data: str, out: Path) -> list[list[str]]:
    """PacGAN2 and PacGAN4; where no add-one table runs the baseline, the GAN row's runs (its seeds)."""
    packed = ["-m", f"experiment={PRESETS[data]}", "trick=[pac]", "trick.pac.m=" + ",".join(map(str, PAC_M)),
              seeds(CHOOSING_SEEDS), *LAUNCH, *EXTRA, f"hydra.sweep.dir={out / 'pac'}"]
    if data in TABLE_DATA:
        return [packed]
    return [packed, ["-m", f"experiment={PRESETS[data]}", "trick=[]",
                     seeds([*CHOOSING_SEEDS, *EXTRA_BASELINE_SEEDS]), *LAUNCH, *EXTRA, f"hydra.sweep.dir={out / 'gan'}"]]


def stacked_commands(out: Path) -> list[list[str]]:
    cells = ",".join(tricks_arg(c) for c in STACKED_CELLS)
    return [["-m", f"experiment={STACKED}", f"trick={cells}", seeds(CHOOSING_SEEDS), *STACKED_EVAL, *LAUNCH, *EXTRA,
             f"hydra.sweep.dir={out / 'main'}"],
            ["-m", f"experiment={STACKED}", "trick=[lecam]", f"trick.lecam.start={LECAM_START_SHORT}",
             seeds(CHOOSING_SEEDS), *STACKED_EVAL, *LAUNCH, *EXTRA, f"hydra.sweep.dir={out / 'lecam'}"],
            ["-m", f"experiment={STACKED}", "trick=[]", seeds(EXTRA_BASELINE_SEEDS), *STACKED_EVAL, *LAUNCH, *EXTRA,
             f"hydra.sweep.dir={out / 'baseline_more_seeds'}"]]


def best_stack_commands(data: str, stack: list[str], out: Path) -> list[list[str]]:
    cells = ",".join(dict.fromkeys([tricks_arg(stack), "[]"]))  # the stack and the baseline (one cell if empty)
    return [["-m", f"experiment={PRESETS[data]}", f"trick={cells}", seeds(REPORTING_SEEDS), *LAUNCH, *EXTRA,
             f"hydra.sweep.dir={out / 'stack'}"],
            ["-m", f"experiment={PRESETS[data]}", "trick=[pac]", "trick.pac.m=4", seeds(REPORTING_SEEDS), *LAUNCH,
             *EXTRA, f"hydra.sweep.dir={out / 'pac4'}"]]


def expected_runs(stage: str, tricks: list[str] = (), stack: list[str] = (), data: str = "") -> int:
    """How many result.json files a stage leaves when every job ran (a skipped cell leaves one per seed too)."""
    from gan_ablate.sweep.design import design_cells

    if stage == "screen":
        return len(design_cells("screening", list(tricks)))
    if stage == "add_one":
        return (1 + len(tricks)) * len(CHOOSING_SEEDS) + len(EXTRA_BASELINE_SEEDS)
    if stage == "pacgan":
        own_gan = 0 if data in TABLE_DATA else len(CHOOSING_SEEDS) + len(EXTRA_BASELINE_SEEDS)
        return len(PAC_M) * len(CHOOSING_SEEDS) + own_gan
    if stage == "stacked":
        return (len(STACKED_CELLS) + 1) * len(CHOOSING_SEEDS) + len(EXTRA_BASELINE_SEEDS)
    if stage == "best_stack":
        return (3 if stack else 2) * len(REPORTING_SEEDS)
    return 1


def check_stage(name: str, folder: Path, expected: int) -> list:
    """The stage's records, refused (one line, naming the folder) unless every job left a finished record: a sweep
    that stopped part-way must not become a page. Failed and diverged runs are finished: the page counts them."""
    from gan_ablate.record import load_records

    records = load_records(folder)
    unfinished = [r for r in records if r.status not in ("ok", "diverged", "failed", "skipped")]
    if len(records) < expected or unfinished:
        sys.exit(f"make_results: stage {name} left {len(records)} records in {folder} ({len(unfinished)} unfinished),"
                 f" not the {expected} its jobs write: run `make results` again to finish it, or see the jobs' "
                 "train.log files")
    return records


def curve_command(out: Path) -> list[str]:
    return [f"experiment={PRESETS['ring8']}", f"trainer.max_steps={CURVE_ITERATIONS}",
            f"metrics.every={CURVE_EVERY}", f"checkpoint.every={CURVE_EVERY * 5}", "seed=0", "logger=csv",
            "trainer.enable_progress_bar=false", *EXTRA, f"hydra.run.dir={out}"]


def shown(args: list[str], results_dir: Path) -> str:
    """A command as the page prints it: from the repository root, the results folder as `make results` names it."""
    text = " ".join(shlex.quote(a) if "[" not in a else a for a in ["python", "train.py", *args])
    return text.replace(str(results_dir), "$RESULTS_DIR")


class Plan:
    """<dir>/plan.json: the commands run so far, what the screen kept, the stacks chosen, the stages' wall times."""

    def __init__(self, results_dir: Path):
        self.dir = results_dir
        self.path = results_dir / "plan.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"stages": {}}

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)

    def stage(self, name: str) -> dict:
        return self.data["stages"].setdefault(name, {"commands": [], "wall_seconds": 0.0})


def train_py(args: list[str], stderr: Path | None = None):
    """train.py with `args`: waited for, or (with `stderr`, a file for its errors) started in the background."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "train.py"), *args]
    if stderr is not None:
        with open(stderr, "w") as err:
            return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    # a sweep whose cells failed exits 1 after every job ran: check_stage then reads what each job left
    result = subprocess.run(command, cwd=ROOT, env=env)
    if result.returncode not in (0, 1):
        sys.exit(f"make_results: `{shlex.join(args)}` exited {result.returncode}")
    return result


def run_stage(plan: Plan, name: str, commands: list[list[str]], expected: int, **extra) -> list:
    """Run a stage's commands (a finished run is not trained again), add this pass's time to the stage's, and return
    its records once every job has left a finished one."""
    stage = plan.stage(name)
    stage.update(extra)
    stage["commands"] = [shown(c, plan.dir) for c in commands]
    plan.save()
    start = time.time()
    for command in commands:
        print(f"make_results [{name}] {shown(command, plan.dir)}", flush=True)
        train_py(command)
    stage["wall_seconds"] = round(stage.get("wall_seconds", 0.0) + time.time() - start, 1)
    plan.save()
    return check_stage(name, plan.dir / name, expected)


def run_stages(plan: Plan, stages: list[str]) -> None:
    results_dir = plan.dir
    for data in PRESETS:
        if "screen" in stages and data in TABLE_DATA:
            tricks, why_not = screen_candidates(data)
            records = run_stage(plan, f"screen/{data}", [screen_command(data, tricks, results_dir / "screen" / data)],
                                expected_runs("screen", tricks), screened=tricks, not_screened=why_not)
            effects = screen_effects(records)
            if not effects:
                folder = results_dir / "screen" / data
                sys.exit(f"make_results: the screen on {data} estimated no effect: python scripts/report.py {folder}")
            plan.stage(f"screen/{data}").update(effects=effects, kept=kept_by_screen(effects))
            plan.save()
        if "add_one" in stages and data in TABLE_DATA:
            kept = plan.stage(f"screen/{data}").get("kept")
            if kept is None:
                sys.exit(f"make_results: add_one on {data} needs the screen's choice: run the screen stage first")
            tricks = add_one_tricks(kept)
            run_stage(plan, f"add_one/{data}", add_one_commands(data, tricks, results_dir / "add_one" / data),
                      expected_runs("add_one", tricks), tricks=tricks)
        if "pacgan" in stages:
            run_stage(plan, f"pacgan/{data}", pacgan_commands(data, results_dir / "pacgan" / data),
                      expected_runs("pacgan", data=data))
    if "stacked" in stages:
        run_stage(plan, "stacked", stacked_commands(results_dir / "stacked"), expected_runs("stacked"))
    if "best_stack" in stages:
        for data in TABLE_DATA:
            tricks = plan.stage(f"add_one/{data}").get("tricks")
            if tricks is None:
                sys.exit(f"make_results: best_stack on {data} is chosen on add_one's runs: run add_one first")
            records = check_stage(f"add_one/{data}", results_dir / "add_one" / data, expected_runs("add_one", tricks))
            stack, gains = choose_stack(records, data)
            run_stage(plan, f"best_stack/{data}", best_stack_commands(data, stack, results_dir / "best_stack" / data),
                      expected_runs("best_stack", stack=stack), stack=stack, gains_on_choosing_seeds=gains)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=ROOT / "multirun" / "results", help="where the sweeps go")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of: {', '.join(STAGES)}")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md", help="the page to write")
    parser.add_argument("--smoke", action="store_true",
                        help=f"try the pipeline in minutes: {' '.join(SMOKE)}, seeds 0-1 choose and 2-3 report "
                             "(needs its own --dir and an --out elsewhere than docs/results.md)")
    args = parser.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        sys.exit(f"make_results: --stages: {', '.join(unknown)} is not a stage; allowed: {', '.join(STAGES)}")
    global CHOOSING_SEEDS, REPORTING_SEEDS, EXTRA_BASELINE_SEEDS
    results_dir = args.dir.resolve()
    if args.smoke:
        if args.out.resolve() == (ROOT / "docs" / "results.md").resolve():
            sys.exit("make_results: --smoke numbers never go on docs/results.md: give --out another path")
        if results_dir == (ROOT / "multirun" / "results").resolve():
            sys.exit("make_results: --smoke needs its own --dir: its runs would stand in for the real ones there")
        EXTRA[:] = SMOKE
        CHOOSING_SEEDS, REPORTING_SEEDS, EXTRA_BASELINE_SEEDS = range(0, 2), range(2, 4), range(4, 6)
    plan = Plan(results_dir)
    if plan.data.setdefault("smoke", args.smoke) != args.smoke:
        kind = "smoke" if plan.data["smoke"] else "real"
        sys.exit(f"make_results: {results_dir} holds {kind} runs: give --dir another folder")
    plan.data.update(choosing_seeds=list(CHOOSING_SEEDS), reporting_seeds=list(REPORTING_SEEDS),
                     extra_baseline_seeds=list(EXTRA_BASELINE_SEEDS), keep_at_most=KEEP_AT_MOST)
    started = time.time()
    curve = None
    try:
        if "curve" in stages:  # one process beside the two-job sweeps: the cores stay busy while a stage ends
            out = results_dir / "curve"
            out.mkdir(parents=True, exist_ok=True)
            plan.stage("curve")["commands"] = [shown(curve_command(out), results_dir)]
            plan.save()
            print(f"make_results [curve, in the background] {shown(curve_command(out), results_dir)}", flush=True)
            curve = train_py(curve_command(out), stderr=results_dir / "curve.stderr")
        run_stages(plan, stages)
        if curve is not None:
            if curve.wait() != 0:
                sys.exit(f"make_results: the learning-curve run exited {curve.returncode}: see "
                         f"{results_dir / 'curve.stderr'}")
            records = check_stage("curve", results_dir / "curve", 1)
            plan.stage("curve")["wall_seconds"] = max(r.wall_time_s or 0.0 for r in records)  # its own time
    finally:
        if curve is not None and curve.poll() is None:  # stopped early: no run goes on writing behind our back
            curve.terminate()
            curve.wait()
    plan.data["wall_seconds"] = round(plan.data.get("wall_seconds", 0.0) + time.time() - started, 1)
    plan.save()
    print(f"make_results: {', '.join(stages)} in {time.time() - started:.0f} s; plan in {plan.path}", flush=True)
    page = [sys.executable, str(ROOT / "scripts" / "results_table.py"), str(results_dir), "--out", str(args.out)]
    subprocess.run(page, cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
