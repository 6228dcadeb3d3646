"""docs/results.md: written by `make results` (scripts/make_results.py, then scripts/results_table.py) with the archive
of the records it was made from. The page must be its archive rendered, every command on it the pipeline's, every
cell at least 5 seeds, the stack chosen on seeds the stack is not reported on; and the table script must compute
what it claims from result.json records."""
from __future__ import annotations

import gzip
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint
from test_statistics import exact_two_sided_p

from gan_ablate.record import RunRecord, run_name
from gan_ablate.tricks import TRICKS as TRICKS_BY_NAME

DOC = ROOT / "docs" / "results.md"
TRICKS = {p.stem for p in (ROOT / "gan_ablate" / "conf" / "trick").glob("*.yaml")}


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table_script():
    return script("results_table")


@pytest.fixture(scope="module")
def pipeline():
    return script("make_results")


@pytest.fixture(scope="module")
def committed(table_script):
    return table_script.Results.from_archive(table_script.ARCHIVE)


# --- the committed page --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_page_is_its_archive_rendered_word_for_word(table_script, committed):
    """No number on the page that its records do not give: re-rendering the committed archive gives the page."""
    assert table_script.render(committed) == DOC.read_text()
    for figure in ("results.png", "learning_curve.png"):
        assert (ROOT / "docs" / figure).is_file()


def test_every_command_on_the_page_is_what_the_pipeline_runs_for_the_recorded_choices(pipeline, committed):
    # a results folder's path, which pipeline.shown prints as $RESULTS_DIR (as make_results prints the real one's)
    plan, out = committed.plan, pipeline.Path("/the_results_folder_of_the_run")
    stages = plan["stages"]

    def shown(*commands):
        return [pipeline.shown(c, out) for c in commands]

    for data in pipeline.PRESETS:
        assert stages[f"pacgan/{data}"]["commands"] == shown(*pipeline.pacgan_commands(data, out / "pacgan" / data))
    for data in pipeline.TABLE_DATA:
        screen = stages[f"screen/{data}"]
        assert stages[f"screen/{data}"]["commands"] == shown(
            pipeline.screen_command(data, screen["screened"], out / "screen" / data))
        tricks = screen["kept"] + list(pipeline.COSTLY) + list(pipeline.LABEL_READING)
        assert stages[f"add_one/{data}"]["tricks"] == tricks
        assert stages[f"add_one/{data}"]["commands"] == shown(
            *pipeline.add_one_commands(data, tricks, out / "add_one" / data))
        best = stages[f"best_stack/{data}"]
        assert best["commands"] == shown(*pipeline.best_stack_commands(data, best["stack"], out / "best_stack" / data))
    assert stages["stacked"]["commands"] == shown(*pipeline.stacked_commands(out / "stacked"))
    assert stages["curve"]["commands"] == shown(pipeline.curve_command(out / "curve"))
    text = DOC.read_text()
    assert all(command in text for stage in stages.values() for command in stage["commands"])


def test_every_trick_of_the_catalogue_is_screened_or_the_page_says_why_not(pipeline, committed):
    text = DOC.read_text()
    for data in pipeline.TABLE_DATA:
        stage = committed.plan["stages"][f"screen/{data}"]
        screened, not_screened = set(stage["screened"]), set(stage["not_screened"])
        assert screened | not_screened == TRICKS and not screened & not_screened, data
        assert set(stage["effects"]) == screened  # every screened trick has its estimate on the page
        assert stage["kept"] == pipeline.kept_by_screen(stage["effects"])
    assert all(f"`{name}` is left out" in text for name in script("results_table").LEFT_OUT)


def test_every_section_of_the_page_is_rendered():
    """No section of the committed page stands in for what its stages would have given ("(not run)", "(needs")."""
    sections = re.findall(r"^##+ (.+)\n\n(.+)$", DOC.read_text(), flags=re.M)
    assert len(sections) >= 8
    for heading, body in sections:
        assert not body.startswith("("), f"section '{heading}' is not rendered: {body}"


def test_every_cell_of_every_table_has_at_least_five_seeds(committed):
    for stage, runs in committed.records.items():
        if stage.startswith(("screen", "curve")):
            continue
        cells: dict[tuple, set] = {}
        for r in runs:
            if r.status != "skipped":
                m = ((r.config.get("trick") or {}).get("pac") or {}).get("m")
                cells.setdefault((r.cell_name, m), set()).add(r.seed)
        assert cells and all(len(seeds) >= 5 for seeds in cells.values()), (stage, cells)


def test_the_stack_is_chosen_on_seeds_0_to_4_and_reported_on_seeds_5_to_9(pipeline, committed):
    for data in pipeline.TABLE_DATA:
        stage = committed.plan["stages"][f"best_stack/{data}"]
        chosen, _ = pipeline.choose_stack(committed.of(f"add_one/{data}"), data)
        assert stage["stack"] == chosen
        assert {r.seed for r in committed.of(f"best_stack/{data}")} == set(range(5, 10))
        assert {r.seed for r in committed.of(f"add_one/{data}")} == set(range(5)) | set(range(10, 15))


def test_cells_that_read_the_mode_labels_are_set_apart_on_the_page(pipeline):
    text = DOC.read_text()
    for data in pipeline.TABLE_DATA:
        section = text.split(f"### {data} (`experiment=")[1].split("\n## ")[0]
        main, _, apart = section.partition("Set apart")
        assert "`+acgan`" in apart and "`+conditional`" in apart and "labels" in apart
        assert "`+acgan`" not in main and "`+conditional`" not in main


# --- the pipeline's choices -----------------------------------------------------------------------------------------

def record(cell: str, seed: int, modes: float, hq: float = 0.5, primary: str = "raw", tricks=None, data="ring8",
           **fields) -> RunRecord:
    metrics = {"modes": modes, "hq": hq, "reverse_kl": 0.1}
    tricks = tricks if tricks is not None else [t for t in cell.lstrip("+").split("+") if t != "baseline"]
    return RunRecord(None, **{"cell": cell, "tricks": tricks, "seed": seed, "data": data, "status": "ok",
                              "primary": primary, "iterations": 10, "job_num": seed, "wall_time_s": 1.0,
                              "metrics": {primary: metrics, "other": {"modes": -1, "hq": 0}}, **fields})


def test_the_screen_recovers_known_main_effects_and_keeps_the_positive_ones_largest_first(pipeline):
    """Plackett-Burman cells whose modes are 5 + 1.5 [a on] - 1 [b on] + 0.25 [c on] (coded +-1, halved): the fitted
    main effects (mean on minus mean off) are 3, -2 and 0.5 and 0 for the others; the screen keeps c and a, a first."""
    from gan_ablate.sweep.design import design_cells

    tricks = ["a", "b", "c", "d", "e", "f", "g"]
    coefficient = {"a": 1.5, "b": -1.0, "c": 0.25}
    records = []
    for job, cell in enumerate(design_cells("screening", tricks)):
        y = 5 + sum(c * (1 if t in cell.tricks else -1) for t, c in coefficient.items())
        records.append(record(cell.label, 0, y, tricks=list(cell.tricks), job_num=job, design="screening"))
    effects = pipeline.screen_effects(records)
    assert effects == pytest.approx({"a": 3.0, "b": -2.0, "c": 0.5, "d": 0, "e": 0, "f": 0, "g": 0}, abs=1e-9)
    assert pipeline.kept_by_screen(effects) == ["a", "c"]
    assert pipeline.kept_by_screen({t: i + 1.0 for i, t in enumerate(tricks)}, at_most=3) == ["g", "f", "e"]
    # least squares' rounding error does not order equal effects: names do
    assert pipeline.kept_by_screen({"z": 0.4 + 4e-16, "m": 0.4 - 4e-16, "a": 0.4, "q": 0.0}) == ["a", "m", "z"]


def test_a_failed_screening_run_counts_as_the_worst_modes_of_the_screen(pipeline):
    """Of the two cells with `a` on, one failed and one reached 2 modes (the screen's worst): the failed one counts as
    2, so `a`'s effect is 2 - 6 = -4 (left out, it would be 2 - 6 too, but from one run: counted, it weighs two)."""
    from gan_ablate.sweep.design import design_cells

    cells = design_cells("screening", ["a", "b", "c"])
    records = [record(c.label, 0, 6.0, tricks=list(c.tricks), job_num=j) for j, c in enumerate(cells)]
    failing, low = [j for j, c in enumerate(cells) if "a" in c.tricks]
    records[failing] = RunRecord(None, **{**records[failing].to_json(), "status": "failed", "metrics": {}})
    records[low].metrics["raw"]["modes"] = 2.0
    samples, imputed = pipeline.cell_samples(pipeline.runs_by_cell(records), "modes")
    assert samples[cells[failing].label] == [2.0] and imputed
    assert pipeline.screen_effects(records)["a"] == pytest.approx(-4.0)


def test_the_stack_takes_every_trick_that_beat_the_baseline_on_the_choosing_seeds_largest_gain_first(pipeline):
    """Gains on every add-one run but seeds 5-9 (seed 7's huge value is ignored; the baseline's seeds 10-14 count);
    a set-apart cell (labels) and a trick that conflicts with one already stacked stay out; a trick that did not beat
    the baseline stays out."""
    runs = [record("baseline", s, 5.0) for s in range(5)] + [record("baseline", s, 5.0) for s in range(10, 15)]
    runs += [record("+ttur", s, 6.0) for s in range(5)]                       # +1
    runs += [record("+label_smoothing", s, 7.0) for s in range(5)]            # +2
    runs += [record("+one_sided_label_smoothing", s, 6.5) for s in range(5)]  # +1.5, conflicts with label_smoothing
    runs += [record("+spectral_norm", s, 4.0) for s in range(5)] + [record("+spectral_norm", 7, 99.0)]
    runs += [record("+conditional", s, 8.0) for s in range(5)]                 # reads the labels: set apart
    stack, gains = pipeline.choose_stack(runs, "ring8")
    assert stack == ["label_smoothing", "ttur"]
    assert gains == pytest.approx({"ttur": 1.0, "label_smoothing": 2.0, "one_sided_label_smoothing": 1.5,
                                   "spectral_norm": -1.0})


@pytest.mark.parametrize("args,message", [
    (["--smoke", "--dir", "{tmp}"], "--out"),                                # the page
    (["--smoke", "--out", "{tmp}/page.md"], "its own --dir"),                # the real runs' folder
])
def test_smoke_numbers_never_reach_the_page_or_the_real_runs_folder(pipeline, monkeypatch, tmp_path, args, message):
    monkeypatch.setattr(pipeline, "train_py", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(SystemExit, match=re.escape(message)):
        pipeline.main([a.format(tmp=tmp_path) for a in args] + ["--stages", "curve"])


def test_a_folder_of_smoke_runs_is_refused_for_real_ones_and_the_other_way(pipeline, monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline, "train_py", lambda *a, **k: pytest.fail("trained before refusing"))
    (tmp_path / "plan.json").write_text('{"stages": {}, "smoke": true}')
    with pytest.raises(SystemExit, match="holds smoke runs"):
        pipeline.main(["--dir", str(tmp_path), "--stages", "curve"])


def test_a_stage_that_left_fewer_or_unfinished_records_is_refused_naming_its_folder(pipeline, tmp_path):
    for i, status in enumerate(["ok", "failed"]):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "result.json").write_text(json.dumps(record("baseline", i, 5.0).to_json() |
                                                                  {"status": status}))
    assert len(pipeline.check_stage("add_one/ring8", tmp_path, 2)) == 2  # a failed run is finished: it counts
    with pytest.raises(SystemExit, match=f"left 2 records in {re.escape(str(tmp_path))}.*not the 3"):
        pipeline.check_stage("add_one/ring8", tmp_path, 3)
    (tmp_path / "1" / "result.json").write_text(json.dumps(record("baseline", 1, 5.0).to_json() |
                                                           {"status": "running"}))
    with pytest.raises(SystemExit, match="1 unfinished"):
        pipeline.check_stage("add_one/ring8", tmp_path, 2)


def test_an_unknown_stage_is_refused_on_one_line_naming_the_allowed_ones():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_results.py"), "--stages", "screen,sreen"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0 and "sreen" in out.stderr and "best_stack" in out.stderr


# the whole pipeline (make_results.main) with a fake train.py: it writes each job's result.json, trains nothing.

# modes a trick adds in the fake's runs (a trick not named adds none): on the screen (grid25, the trick table's data
# set) the good ones are kept, largest first, at most 4 (label_smoothing, the 5th, is not); the label readers gain
# most and are set apart; of the two costly tricks only minibatch_discrimination gains; the stack follows from the
# add-one gains. ring8 has PacGAN's rows only.
GAIN = {"ring8": {"pac": 3.0},
        "grid25": {"ttur": 2.0, "spectral_norm": 1.5, "r2": 1.0, "instance_noise": 0.5, "label_smoothing": 0.25,
                   "d_dropout": -1.0, "ema": -0.5, "minibatch_discrimination": 0.75, "capacity": -2.0,
                   "acgan": 3.0, "conditional": 5.0, "pac": 8.0},
        "stacked_mnist": {"pac": 400.0, "r1": 50.0, "r2": 40.0, "lecam": -20.0}}
KEPT = {"grid25": ["ttur", "spectral_norm", "r2", "instance_noise"]}
# every trick that gained in the add-one table (not set apart), largest gain first: none of them conflicts
STACK = ["ttur", "spectral_norm", "r2", "minibatch_discrimination", "instance_noise"]
BASE_MODES = {"ring8": 2.0, "grid25": 10.0, "stacked_mnist": 300.0}
MODES_OF = {"ring8": 8, "grid25": 25, "stacked_mnist": 1000}
# the catalogue narrowed (each trick costs the pipeline a Hydra compose per data set): the screened tricks above and
# one of each kind the screen passes over (label readers, costly, a conflicting pair, refused on grid25, left out)
CATALOGUE = sorted({t for gains in GAIN.values() for t in gains} | {"acgan", "conditional", "g_history",
                                                                    "experience_replay", "checkpoint_swap", "ema",
                                                                    "large_batch", "consistency", "lecam", "r1"})
PIPELINE_ORDER = ["curve", "pacgan/ring8", "screen/grid25", "add_one/grid25", "pacgan/grid25", "stacked",
                  "best_stack/grid25"]
# the fake clock's step per waited-for train.py command: a stage's time is its commands'; small, so that the page's
# times (in minutes) read 0 after two passes too and a second pass renders the same page
SECONDS_PER_COMMAND = 0.5


def sweep_values(key: str, value: str) -> list:
    if key in ("trick", "ablation.tricks"):
        return [[t for t in cell.split(",") if t] for cell in re.findall(r"\[([^\]]*)\]", value)]
    return [int(v) if v.isdigit() else v for v in value.split(",")]


def fake_jobs(args: list[str]) -> tuple[Path, list[dict]]:
    """The run folder and fields of each job train.py would run for `args` (a Hydra multirun's job folders are
    numbered; the ablation sweeper runs its design's cells x ablation.seeds, a plain sweep the product of its lists
    in command-line order)."""
    from itertools import product

    from gan_ablate.record import cell_label
    from gan_ablate.sweep.design import design_cells

    given = dict(a.split("=", 1) for a in args if "=" in a)
    base = {"data": {"pacgan_ring_short": "ring8", "pacgan_grid_short": "grid25"}.get(given["experiment"],
                                                                                       "stacked_mnist"),
            "iterations": int(given.get("trainer.max_steps", 2000 if "ring" in given["experiment"] else 500)),
            "set": {k: int(v) for k, v in given.items() if k.startswith("trick.") and v.isdigit()}}
    if "-m" not in args:
        return Path(given["hydra.run.dir"]), [{**base, "tricks": sweep_values("trick", given.get("trick", "[]"))[0],
                                               "seed": int(given["seed"])}]
    sweep_dir = Path(given["hydra.sweep.dir"])
    if given.get("hydra/sweeper") == "ablation":
        cells = design_cells(given["ablation.design"], sweep_values("ablation.tricks", given["ablation.tricks"])[0])
        jobs = [{**base, "tricks": list(c.tricks), "seed": s, "design": given["ablation.design"], "cell": c.label,
                 "reference": cells[0].label} for c in cells for s in range(int(given["ablation.seeds"]))]
    else:
        swept = [(k, sweep_values(k, v)) for k, v in given.items()
                 if k in ("trick", "seed") or (k.startswith("trick.") and "," in v)]
        jobs = []
        for values in product(*(vs for _, vs in swept)):
            job = {**base, "set": dict(base["set"]), "design": "grid"}
            for (key, _), value in zip(swept, values):
                if key == "trick":
                    job["tricks"] = value
                elif key == "seed":
                    job["seed"] = value
                else:
                    job["set"][key] = value
            jobs.append({**job, "cell": cell_label(job["tricks"])})
    return sweep_dir, [{**job, "job_num": i, "sweep": str(sweep_dir), "dir": sweep_dir / str(i)}
                       for i, job in enumerate(jobs)]


def fake_record(job: dict, run_dir: Path) -> RunRecord:
    """A finished run whose modes are the data's base plus its tricks' gains (and a little per seed)."""
    from gan_ablate.revisions import trick_revisions, uses_mode_labels

    data, tricks, seed = job["data"], job["tricks"], job["seed"]

    def metrics(modes: float) -> dict:
        modes = min(MODES_OF[data], modes)
        if data == "stacked_mnist":
            return {"modes": modes, "kl": 3.0 - modes / 400}
        return {"modes": modes, "hq": 0.9 - 0.01 * modes, "reverse_kl": 1 / (1 + modes)}

    modes = BASE_MODES[data] + sum(GAIN[data].get(t, 0.0) for t in tricks) + 0.1 * (seed % 5)
    config = {"trick": {t: {} for t in tricks}, "trainer": {"max_steps": job["iterations"]}}
    for key, value in job["set"].items():
        config["trick"].setdefault(key.split(".")[1], {})[key.split(".")[2]] = value
    if "pac" in tricks:
        config["trick"]["pac"].setdefault("m", 2)  # conf/trick/pac.yaml's
    # a single run (the learning curve) evaluates every 1,000 iterations on its way to its modes
    history = [] if "job_num" in job else [
        {"iteration": i, "raw": metrics(modes * i / job["iterations"]), "ema": metrics(modes * i / job["iterations"])}
        for i in range(1000, job["iterations"] + 1, 1000)]
    fields = {k: job[k] for k in ("job_num", "sweep", "design", "cell", "reference") if k in job}
    return RunRecord(run_dir, name=run_name(tricks, seed), tricks=tricks, seed=seed, data=data,
                     uses_mode_labels=uses_mode_labels(tricks, data), trick_revisions=trick_revisions(tricks),
                     **fields, config=config, status="ok", iterations=job["iterations"],
                     wall_time_s=0.02 * job["iterations"] * config["trick"].get("pac", {}).get("m", 1),
                     primary="raw", metrics={"raw": metrics(modes), "ema": metrics(modes + 0.5)}, history=history)


class Background:
    """The learning curve's process: it finishes (writing its record) when waited for, unless terminated first."""

    def __init__(self, finish):
        self.finish, self.returncode, self.terminated = finish, None, False

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self.finish()
            self.returncode = 0
        return self.returncode

    def terminate(self):
        self.terminated, self.returncode = True, -15


class FakeTrainPy:
    """make_results.train_py without training: each job's result.json as train.py leaves it (a job already finished is
    not run again), `leave_out` (a job folder under the results folder) writing none. Each waited-for command moves
    the fake clock SECONDS_PER_COMMAND on."""

    def __init__(self, leave_out: str | None = None):
        self.now, self.calls, self.written, self.leave_out, self.background = 0.0, [], 0, leave_out, None

    def time(self) -> float:
        return self.now

    def run(self, args: list[str]) -> None:
        from gan_ablate.record import RESULT_FILE, load_record

        run_dir, jobs = fake_jobs(args)
        for job in jobs:
            folder = job.pop("dir", run_dir)
            if (folder / RESULT_FILE).is_file() and load_record(folder / RESULT_FILE).status == "ok":
                continue
            if self.leave_out and folder.as_posix().endswith("/" + self.leave_out):
                continue
            folder.mkdir(parents=True, exist_ok=True)
            fake_record(job, folder).write()
            self.written += 1

    def __call__(self, args: list[str], stderr=None):
        self.calls.append(list(args))
        if stderr is not None:
            Path(stderr).write_text("")
            self.background = Background(lambda: self.run(args))
            return self.background
        self.run(args)
        self.now += SECONDS_PER_COMMAND
        return subprocess.CompletedProcess(args, 0)


REFUSALS: dict[tuple, str | None] = {}  # the real answers, asked once per test session (a Hydra compose each)


def install_fake(pipeline, monkeypatch, **kwargs) -> FakeTrainPy:
    """The pipeline with a fake train.py and clock, over CATALOGUE, asking each refusal of Hydra once per session."""
    real = pipeline.refusal

    def refusal(overrides: list[str]) -> str | None:
        if tuple(overrides) not in REFUSALS:
            REFUSALS[tuple(overrides)] = real(overrides)
        return REFUSALS[tuple(overrides)]

    fake = FakeTrainPy(**kwargs)
    monkeypatch.setattr(pipeline, "train_py", fake)
    monkeypatch.setattr(pipeline, "time", SimpleNamespace(time=fake.time))
    monkeypatch.setattr(pipeline, "catalogue", lambda: CATALOGUE)
    monkeypatch.setattr(pipeline, "refusal", refusal)
    return fake


def run_pipeline(pipeline, folder: Path) -> tuple[Path, Path]:
    results, page = folder / "results", folder / "page" / "results.md"
    page.parent.mkdir(exist_ok=True)
    pipeline.main(["--dir", str(results), "--out", str(page)])
    return results, page


@pytest.fixture(scope="module")
def first_pass(pipeline, tmp_path_factory):
    """The whole pipeline once, train.py faked: the fake, the results folder, the page (a pass renders the page in
    a process of its own: seconds, so the tests share one)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake = install_fake(pipeline, monkeypatch)
        return (fake, *run_pipeline(pipeline, tmp_path_factory.mktemp("pipeline")))


def section(text: str, heading: str, data: str | None = None) -> str:
    """The part of the page under `heading` (and its `### data` part)."""
    part = text.split(heading, 1)[1].split("\n## ")[0]
    return part.split(f"### {data}", 1)[1].split("\n### ")[0] if data else part.split("\n### ")[0]


def test_the_pipeline_runs_its_stages_in_order_on_its_own_choices_and_renders_what_they_left(
        pipeline, table_script, first_pass):
    """Every stage of `make results`, train.py faked: the screen keeps the tricks that gain (largest first, at most
    4), add-one runs them with the costly and label-reading tricks, the stack is choose_stack's on add-one's records,
    reported on seeds 5-9; each command the plan shows is the one train.py was given, in pipeline order; the page,
    its figures and its archive are written, the page's tables holding the rows each stage ran."""
    from gan_ablate.record import load_records

    fake, results, page = first_pass
    stages = json.loads((results / "plan.json").read_text())["stages"]
    assert list(stages) == PIPELINE_ORDER
    expected = {"curve": [pipeline.curve_command(results / "curve")],
                "stacked": pipeline.stacked_commands(results / "stacked")}
    stacks = {}
    for data in pipeline.PRESETS:
        expected[f"pacgan/{data}"] = pipeline.pacgan_commands(data, results / "pacgan" / data)
    for data in pipeline.TABLE_DATA:
        screen = stages[f"screen/{data}"]
        assert screen["kept"] == KEPT[data] and set(KEPT[data]) < set(screen["screened"])
        assert {t for t, e in screen["effects"].items() if abs(e) > 1e-9} == {
            t for t in screen["screened"] if GAIN[data].get(t, 0.0)}
        tricks = KEPT[data] + list(pipeline.COSTLY) + list(pipeline.LABEL_READING)
        assert stages[f"add_one/{data}"]["tricks"] == tricks
        stacks[data], _ = pipeline.choose_stack(load_records(results / "add_one" / data), data)
        assert stages[f"best_stack/{data}"]["stack"] == stacks[data]
        assert {r.seed for r in load_records(results / "best_stack" / data)} == set(range(5, 10))
        expected |= {f"screen/{data}": [pipeline.screen_command(data, screen["screened"], results / "screen" / data)],
                     f"add_one/{data}": pipeline.add_one_commands(data, tricks, results / "add_one" / data),
                     f"best_stack/{data}": pipeline.best_stack_commands(data, stacks[data],
                                                                        results / "best_stack" / data)}
        assert all("seed=5,6,7,8,9" in c for c in expected[f"best_stack/{data}"])
    assert stacks == {"grid25": STACK}
    assert "refused on this preset" in stages["screen/grid25"]["not_screened"]["checkpoint_swap"]
    for name in PIPELINE_ORDER:
        assert stages[name]["commands"] == [pipeline.shown(c, results) for c in expected[name]], name
    assert fake.calls == [c for name in PIPELINE_ORDER for c in expected[name]]

    text = page.read_text()
    assert all((page.parent / name).is_file() for name in ("results.png", "learning_curve.png",
                                                           "results_records.json.gz"))
    archived = table_script.Results.from_archive(page.parent / "results_records.json.gz")
    assert list(archived.plan["stages"]) == PIPELINE_ORDER and table_script.render(archived) == text
    assert all(command in text for stage in stages.values() for command in stage["commands"])
    for data in pipeline.PRESETS:
        pacgan = rows_of([section(text, "## PacGAN's rows", data)])
        assert list(pacgan) == ["`GAN`", "`PacGAN2`", "`PacGAN4`"]
        assert pacgan["`GAN`"][0] == "10"  # seeds 0-4 and 10-14: add-one's baseline, or (ring8) the stage's own runs
    assert {r.seed for r in load_records(results / "pacgan" / "ring8") if not r.tricks} == {*range(5), *range(10, 15)}
    assert not any(r.tricks == [] for r in load_records(results / "pacgan" / "grid25"))
    for data in pipeline.TABLE_DATA:
        screen = rows_of([section(text, "## Screening the 2-D tricks", f"Screen on {data}")])
        assert [t.strip("`") for t, cells in screen.items() if cells[-1] == "yes"] == KEPT[data]
        assert all(float(cells[0]) == pytest.approx(GAIN[data].get(t.strip("`"), 0.0)) for t, cells in screen.items())
        main, _, apart = section(text, f"### {data} (`experiment=").partition("Set apart")
        assert list(rows_of([main])) == ["`baseline`"] + [f"`+{t}`" for t in KEPT[data] + list(pipeline.COSTLY)]
        assert list(rows_of([apart])) == ["`+acgan`", "`+conditional`"]
        assert list(rows_of([section(text, "## Best stack vs PacGAN4", data)])) == [
            "`PacGAN4`", f"`stack: {'+'.join(stacks[data])}`", "`baseline`"]
    stacked = list(rows_of([section(text, "## The modern regularisers on stacked MNIST")]))
    assert stacked[0] == "`baseline`" and sorted(stacked[1:]) == sorted(
        ["`pac (m=2)`", "`r1`", "`r2`", "`diffaugment`", "`consistency`", "`lecam`"])
    assert "to 25,000 iterations, evaluated every 1,000" in section(text, "## Learning curve")


def test_a_second_pass_on_a_finished_folder_trains_nothing_adds_its_time_and_renders_the_same(
        pipeline, first_pass, monkeypatch, tmp_path):
    """Run again on its folder (a copy of the first pass's), the pipeline gives train.py the same commands, which
    find every job finished; each stage's wall time is the first pass's plus this one's, the curve's its own run's;
    the page and the archived records are the same."""
    import shutil

    first, results, page = first_pass
    shutil.copytree(results.parent, tmp_path, dirs_exist_ok=True)
    plan = json.loads((results / "plan.json").read_text())
    again = install_fake(pipeline, monkeypatch)
    run_pipeline(pipeline, tmp_path)
    assert [pipeline.shown(c, tmp_path / "results") for c in again.calls] == [
        pipeline.shown(c, results) for c in first.calls]
    assert first.written > 0 and again.written == 0
    replan = json.loads((tmp_path / "results" / "plan.json").read_text())
    for name, stage in plan["stages"].items():
        if name == "curve":  # its own run's time, not the pipeline's
            assert replan["stages"][name]["wall_seconds"] == stage["wall_seconds"] == 0.02 * 25_000
        else:
            assert stage["wall_seconds"] == SECONDS_PER_COMMAND * len(stage["commands"]), name
            assert replan["stages"][name]["wall_seconds"] == 2 * stage["wall_seconds"], name
    waited_for = len(first.calls) - 1  # all but the curve's
    assert (plan["wall_seconds"], replan["wall_seconds"]) == (SECONDS_PER_COMMAND * waited_for,
                                                              2 * SECONDS_PER_COMMAND * waited_for)
    assert (tmp_path / "page" / "results.md").read_text() == page.read_text()
    archives = [json.loads(gzip.decompress((folder / "results_records.json.gz").read_bytes()))
                for folder in (page.parent, tmp_path / "page")]
    assert archives[0]["records"] == archives[1]["records"]


def test_a_job_that_left_no_record_stops_the_pipeline_naming_its_stage_and_stops_the_curve(
        pipeline, monkeypatch, tmp_path):
    """A stage whose job left no result.json is refused as check_stage refuses it, before any later stage runs and
    before a page is written; the learning curve, still running, is terminated."""
    fake = install_fake(pipeline, monkeypatch, leave_out="pacgan/grid25/pac/3")
    folder = tmp_path / "results" / "pacgan" / "grid25"
    with pytest.raises(SystemExit, match=rf"stage pacgan/grid25 left 9 records in {re.escape(str(folder))} "
                                         r"\(0 unfinished\), not the 10"):
        run_pipeline(pipeline, tmp_path)
    assert fake.calls[-1] == pipeline.pacgan_commands("grid25", folder)[-1]  # no stage after it ran
    assert fake.background.terminated and not (tmp_path / "page" / "results.md").exists()


# --- the tables' statistics -----------------------------------------------------------------------------------------

def rows_of(lines: list[str]) -> dict[str, list[str]]:
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in "\n".join(lines).splitlines() if line.startswith("| `")}


def test_table_means_standard_errors_and_calls_come_from_the_records(table_script):
    baseline_modes, spectral_modes, ema_hq = [4, 5, 6] * 2, [7, 8, 8] * 2, [0.1, 0.2, 0.3] * 2
    records = [record("baseline", s, m, 0.5) for s, m in enumerate(baseline_modes)]
    records += [record("+spectral_norm", s, m, 0.5) for s, m in enumerate(spectral_modes)]
    records += [record("+ema", s, 5, h, primary="ema", trick_revisions={"ema": TRICKS_BY_NAME["ema"].revision})
                for s, h in enumerate(ema_hq)]
    lines = table_script.table(records, table_script.METRICS_2D, "every sample")
    rows = rows_of(lines)
    low, high = proportion_confint(0, 6, method="wilson")
    assert rows["`baseline`"][:4] == ["6", f"0/6 [{low:.2f}, {high:.2f}]", f"5.00 ± {stats.sem(baseline_modes):.2f}",
                                      "50.0 ± 0.0"]
    assert rows["`+spectral_norm`"][2] == f"{np.mean(spectral_modes):.2f} ± {stats.sem(spectral_modes):.2f}"
    assert rows["`+ema`"][3] == f"20.0 ± {stats.sem([100 * h for h in ema_hq]):.1f}"  # the EMA G's HQ, not the raw
    baseline = {"modes": baseline_modes, "hq": [50.0] * 6, "reverse_kl": [0.1] * 6}
    cells = {"+spectral_norm": {"modes": spectral_modes, "hq": [50.0] * 6, "reverse_kl": [0.1] * 6},
             "+ema": {"modes": [5] * 6, "hq": [100 * h for h in ema_hq], "reverse_kl": [0.1] * 6}}
    p = {(c, m): exact_two_sided_p(values, baseline[m]) for c, per in cells.items() for m, values in per.items()}
    adjusted = dict(zip(p, multipletests(list(p.values()), method="holm")[1]))
    assert "Holm-adjusted over the 6 comparisons of this table" in lines[0]
    assert rows["`+spectral_norm`"][5] == f"better modes (+2.67, adjusted p {adjusted['+spectral_norm', 'modes']:.2g})"
    assert rows["`+ema`"][5] == f"worse hq (-30.0, adjusted p {adjusted['+ema', 'hq']:.2g})"


def test_a_table_compares_with_the_reference_it_names_listed_first(table_script):
    runs = [record("PacGAN4", s, 8.0) for s in range(5)] + [record("stack: ttur", s, 3.0, tricks=["ttur"])
                                                            for s in range(5)]
    lines = table_script.table(runs[5:] + runs[:5], ("modes",), "", "PacGAN4")
    rows = rows_of(lines)
    assert list(rows) == ["`PacGAN4`", "`stack: ttur`"] and rows["`stack: ttur`"][-1].startswith("worse modes (-5.00")
    assert "vs `PacGAN4`" in lines[2]


def test_diverged_runs_count_in_the_failure_rate_and_as_the_worst_value(table_script):
    records = [record("baseline", s, m) for s, m in enumerate([4, 5, 6])]
    records += [record("+instance_noise", s, 8) for s in range(3)]
    records += [RunRecord(None, **{**record("+instance_noise", s, 0).to_json(), "status": "diverged", "metrics": {}})
                for s in (3, 4)]
    rows = rows_of(table_script.table(records, table_script.METRICS_2D, ""))
    low, high = proportion_confint(2, 5, method="wilson")
    assert rows["`+instance_noise`"][:3] == ["5 (2 as worst)", f"2/5 [{low:.2f}, {high:.2f}]",
                                             f"{np.mean([8, 8, 8, 4, 4]):.2f} ± {stats.sem([8, 8, 8, 4, 4]):.2f}"]


def test_cells_that_read_the_mode_labels_or_ran_an_old_mechanism_are_set_apart(table_script):
    """Each such cell leaves the comparison (no call, however large its difference) for a table of its own that
    says why; the cells beside them keep their calls."""
    records = [record("baseline", s, m, 0.1) for s, m in enumerate([1, 2, 3] * 2)]
    records += [record("+conditional", s, 8, 0.9) for s in range(3)]
    records += [record("+ema", s, 8, 0.9, primary="ema") for s in range(3)]  # revision 1: before the fix
    records += [record("+ttur", s, 8, 0.9) for s in range(6)]
    lines = table_script.table(records, table_script.METRICS_2D, "")
    main, _, apart = "\n".join(lines).partition("Set apart")
    assert "`+ttur`" in main and "better modes" in main
    assert "`+conditional`" not in main and "`+ema`" not in main
    why = {line.split("|")[1].strip(): line.split("|")[-2] for line in apart.splitlines() if line.startswith("| `")}
    assert "labels" in why["`+conditional`"] and "measured before the fix to `ema`" in why["`+ema`"]
    assert "better" not in apart


def test_the_reverse_kl_column_names_its_definition_and_a_run_without_hq_samples_counts_as_worst(table_script):
    """PacGAN's reverse KL (metrics.reverse_kl=high_quality) is nan for a run with no high-quality sample: it counts
    as the table's worst value, as a failed run does; a page mixing the two definitions is refused."""
    hq = {"metrics": {"reverse_kl": "high_quality"}}
    records = [record("baseline", s, 5, config=hq) for s in range(3)]
    for r, kl in zip(records, [0.2, 0.4, float("nan")]):
        r.metrics["raw"]["reverse_kl"] = kl
    name = table_script.reverse_kl_text(records)
    lines = table_script.table(records, table_script.METRICS_2D, name)
    assert "| HQ % | reverse KL (the high-quality samples only, PacGAN's) |" in "\n".join(lines)
    assert rows_of(lines)["`baseline`"][4] == f"{np.mean([0.2, 0.4, 0.4]):.3f} ± {stats.sem([0.2, 0.4, 0.4]):.3f}"
    with pytest.raises(SystemExit, match="reverse_kl under 2 definitions"):
        table_script.reverse_kl_text(records + [record("baseline", 3, 5)])


def test_the_slurm_estimate_is_the_curves_seconds_per_iteration_m_times_for_pacgan_m(table_script):
    """GAN: the learning-curve run's wall time / iterations; PacGANm: m times that (an upper bound), the short runs'
    measured ratio beside it; hours = x 400,000; the total is 10 seeds of every row; the time limit a third of the
    longest run."""
    pac = lambda m: {"trick": {"pac": {"m": m}}}  # noqa: E731
    results = table_script.Results({"stages": {}}, {"curve": [record("baseline", 0, 8, wall_time_s=500.0,
                                                                     iterations=25_000)]})
    for data, base in (("ring8", 0.05), ("grid25", 0.2)):
        gan = [record("baseline", s, 5, wall_time_s=base * 2000, iterations=2000) for s in range(5)]
        results.records[f"pacgan/{data}"] = [record("pac", s, 5, tricks=["pac"], config=pac(m), iterations=2000,
                                                    wall_time_s=base * (1 + m / 4) * 2000)
                                             for m in (2, 4) for s in range(5)]
        # the GAN runs: the add-one baseline on grid25 (the trick table's data); ring8's, the pacgan stage's own
        if data == "grid25":
            results.records[f"add_one/{data}"] = gan
        else:
            results.records[f"pacgan/{data}"] += gan
    text = "\n".join(table_script.slurm_section(results))
    curve = 500.0 / 25_000
    for data in ("ring8", "grid25"):
        for m, row, ratio in ((1, "GAN", "–"), (2, "PacGAN2", "1.50"), (3, "PacGAN3", "not run"),
                              (4, "PacGAN4", "2.00")):
            hours = m * curve * 400_000 / 3600
            assert f"| {data} | {row} | {m * curve * 1000:.1f} | {ratio} | {hours:.1f} | {10 * hours:.0f} |" in text
    assert f"at most **{2 * sum(10 * m * curve * 400_000 / 3600 for m in (1, 2, 3, 4)):,.0f} CPU-core hours**" in text
    assert f"timeout_min={60 * math.ceil(4 * curve * 400_000 / 3600 / 3)}" in text and "gpus_per_node=1" in text


def test_lenths_margin_is_the_pseudo_standard_error_of_the_small_effects_times_t_of_m_over_3(table_script):
    """Lenth (1989): s0 = 1.5 median|c|; PSE = 1.5 median of the |c| < 2.5 s0; margin = t(0.975, m/3) PSE. Six
    effects of 1 and three large: s0 = 1.5, the large ones trimmed, PSE = 1.5, margin = t(0.975, 3) x 1.5."""
    pse, margin = table_script.lenth_margin([1, -1, 1, -1, 1, 1, 10, -10, 20])
    assert pse == pytest.approx(1.5) and margin == pytest.approx(stats.t.ppf(0.975, 3) * 1.5)


def test_a_table_says_how_small_an_adjusted_p_its_runs_can_reach(table_script):
    """5 + 5 runs: 2/252 at best; Holm over 6 comparisons: 0.048 (a call is possible), over 9: 0.071 (none is)."""
    base = [record("baseline", s, 5.0 + s % 2) for s in range(5)]
    two = [record(f"+t{i}", s, 9.0, tricks=[f"t{i}"]) for i in range(2) for s in range(5)]
    three = two + [record("+t2", s, 9.0, tricks=["t2"]) for s in range(5)]
    assert "can reach is 0.048." in table_script.table(base + two, table_script.METRICS_2D, "")[0]
    assert "can reach is 0.071: this table can call nothing." in table_script.table(base + three,
                                                                                     table_script.METRICS_2D, "")[0]


def test_a_cell_shown_untested_takes_no_share_of_the_adjustment(table_script):
    runs = [record("PacGAN4", s, 8.0) for s in range(5)] + [record("stack", s, 3.0, tricks=["ttur"]) for s in range(5)]
    runs += [record("baseline", s, 1.0) for s in range(5)]
    lines = table_script.table(runs, table_script.METRICS_2D, "", "PacGAN4", untested=("baseline",))
    rows = rows_of(lines)
    assert "over the 3 comparisons" in lines[0] and rows["`baseline`"][-1] == "(shown, not tested)"
    assert rows["`stack`"][-1].startswith("worse modes (-5.00")


def test_an_empty_or_missing_source_is_refused_with_the_way_out(tmp_path):
    for source in (tmp_path, tmp_path / "nothing.json.gz"):
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "results_table.py"), str(source)],
                             capture_output=True, text=True, cwd=ROOT)
        assert out.returncode != 0 and "make results" in out.stderr


def test_the_archive_gives_back_the_records_it_was_written_from(table_script, tmp_path):
    results = table_script.Results({"stages": {"add_one/ring8": {"commands": ["python train.py -m x"]}}},
                                   {"add_one/ring8": [record("baseline", s, 5.0 + s) for s in range(3)]})
    path = tmp_path / "a.json.gz"
    results.write_archive(path)
    again = table_script.Results.from_archive(path)
    assert again.plan == results.plan
    assert [r.to_json() for r in again.of("add_one/ring8")] == [r.to_json() for r in results.of("add_one/ring8")]
    first = path.read_bytes()
    results.write_archive(path)
    assert path.read_bytes() == first  # same records, same bytes: a regenerated archive differs only where it changed
    assert not math.isnan(table_script.summarise([1.0, 2.0]).se)
