"""scripts/mutation_report.py turns mutmut's results (mutants/*.meta and the mutated files) into docs/mutation.md."""
import json
import subprocess
import sys

from conftest import ROOT

# mutmut's exit codes: 1 killed, 0 survived, 36 timeout, 33 no test calls the function, None not run yet
RESULTS = {
    "gan_ablate/penalties.py": {"gan_ablate.penalties.x_gradient_penalty__mutmut_1": 1,
                                "gan_ablate.penalties.x_gradient_penalty__mutmut_2": 0,
                                "gan_ablate.penalties.x_gradient_penalty__mutmut_3": 0,
                                "gan_ablate.penalties.x_gradient_penalty__mutmut_4": 36},
    "gan_ablate/tricks/noise.py": {"gan_ablate.tricks.noise.x_sigma__mutmut_1": 33,
                                   "gan_ablate.tricks.noise.x_sigma__mutmut_2": None,
                                   "gan_ablate.tricks.noise.x_sigma__mutmut_3": 1},
    "gan_ablate/module.py": {"gan_ablate.module.x_unlisted__mutmut_1": 0,
                             "gan_ablate.module.x_unlisted__mutmut_2": 1},
}
# the original and the mutants of each function, as mutmut writes them into mutants/
MUTATED = {
    "gan_ablate/penalties.py": {"orig": "return a * 10.0", "2": "return a * 11.0", "3": "return None"},
    "gan_ablate/tricks/noise.py": {"orig": "return 0.1 * step", "1": "return 0.1 / step"},
}


def fabricate_run(root):
    for source, codes in RESULTS.items():
        meta = root / "mutants" / f"{source}.meta"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": codes, "hash_by_function_name": {},
                                    "type_check_error_by_key": {}, "durations_by_key": {},
                                    "estimated_durations_by_key": {}}))
    for source, bodies in MUTATED.items():
        function = "gradient_penalty" if "penalties" in source else "sigma"
        (root / "mutants" / source).write_text("".join(
            f"def x_{function}__mutmut_{n}(a, step=1):\n    {body}\n\n" for n, body in bodies.items()))
    # the tests that call each function and their durations: mutmut's bound for the unrun noise mutant is 2 h
    (root / "mutants" / "mutmut-stats.json").write_text(json.dumps({
        "tests_by_mangled_function_name": {"gan_ablate.tricks.noise.x_sigma": ["tests/a.py::t1", "tests/a.py::t2"]},
        "duration_by_test": {"tests/a.py::t1": 4000.0, "tests/a.py::t2": 3200.0}}))
    (root / "docs").mkdir()
    (root / "docs" / "mutation_equivalent.md").write_text(
        "| mutant | why |\n|---|---|\n"
        "| `gan_ablate.penalties.x_gradient_penalty__mutmut_2` | the factor only scales a loss that is compared to 0 |\n"
        "| `gan_ablate.penalties.x_gradient_penalty__mutmut_1` | was equivalent before a test killed it |\n")


def test_page_counts_each_file_lists_the_survivors_with_their_change_and_reads_the_equivalence_marks(tmp_path):
    fabricate_run(tmp_path)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "mutation_report.py"), "--command", "mutmut run X",
                             "--wall-seconds", "28800"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "docs" / "mutation.md").read_text()
    lines = page.splitlines()

    assert "Command: `mutmut run X`" in page
    assert "re-ran" not in page  # a note only when one is given
    # file | mutants | killed | survived | timeout | other | not run
    assert "| `gan_ablate/penalties.py` | 4 | 1 | 2 | 1 | 0 | 0 |" in lines
    assert "| `gan_ablate/tricks/noise.py` | 3 | 1 | 0 | 0 | 1 | 1 |" in lines
    assert "| `gan_ablate/module.py` | 2 | 1 | 1 | 0 | 0 | 0 |" in lines
    assert "| **total** | 9 | 3 | 3 | 1 | 1 | 1 |" in lines
    # 8 mutants run, one marked equivalent: 3 killed of 7; the unrun one is named, with the time it would take
    assert "3 / 7 = 42.9 %" in page
    assert "`gan_ablate/tricks/noise.py` (1 of 3)" in page
    assert "about 1.0 h more at this run's pace (its workers), and one worker at most 2.0 h by mutmut's estimate" in page

    survivors = [l for l in lines if l.startswith("| `gan_ablate.")]
    assert survivors == [
        "| `gan_ablate.penalties.x_gradient_penalty__mutmut_2` | survived | `return a * 10.0` → `return a * 11.0` | "
        "equivalent: the factor only scales a loss that is compared to 0 |",
        "| `gan_ablate.penalties.x_gradient_penalty__mutmut_3` | survived | `return a * 10.0` → `return None` | "
        "not killed: needs a test |",
        "| `gan_ablate.tricks.noise.x_sigma__mutmut_1` | no tests | `return 0.1 * step` → `return 0.1 / step` | "
        "not killed: needs a test |",
    ]  # module.py's survivor is counted, not listed
    assert "not a survivor of this run (killed, not run, or renumbered since): " \
           "`gan_ablate.penalties.x_gradient_penalty__mutmut_1`." in page


def test_a_note_says_what_changed_the_results_after_the_command(tmp_path):
    fabricate_run(tmp_path)
    note = "Then re-ran 2 survivors with tests added since."
    subprocess.run([sys.executable, str(ROOT / "scripts" / "mutation_report.py"), "--command", "mutmut run X",
                    "--wall-seconds", "60", "--note", note], cwd=tmp_path, check=True)
    lines = (tmp_path / "docs" / "mutation.md").read_text().splitlines()
    assert lines[lines.index(note) - 2].startswith("Wall time: 60 s")


def test_without_results_it_says_to_run_mutmut_first(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "mutation_report.py"), "--command", "x",
                             "--wall-seconds", "1"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "no mutmut results under mutants/: run `mutmut run` first (make mutants)"
    assert not (tmp_path / "docs").exists()
