"""The shape of the run's code: one run's orchestration on one screen (run.py), and a sweeper that checks cells
without loading the training code."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEPER = ROOT / "hydra_plugins" / "gan_ablate_sweepers" / "sweepers.py"
RUN = ROOT / "gan_ablate" / "run.py"


def test_run_py_keeps_one_run_on_one_screen():
    """run.py orchestrates; the rules it follows (validation, run folder, evaluators, loggers, trainer) live in
    their own modules. Code growing back into it fails here: move it to the module of its concern."""
    source = RUN.read_text()
    assert len(source.splitlines()) < 200
    [train] = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "train"]
    assert train.end_lineno - train.lineno < 50


def gan_ablate_imports(path: Path) -> set[str]:
    return {node.module for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gan_ablate")}


def test_the_sweeper_checks_cells_through_the_validation_module_without_loading_training():
    """The sweeper validates every cell before launching it; loading run.py (Lightning, loggers, data) for that
    would cost each sweep start the whole training stack."""
    imported = gan_ablate_imports(SWEEPER)
    assert "gan_ablate.validation" in imported and "gan_ablate.run" not in imported
    # what the sweeper imports loads neither run.py nor Lightning
    probe = "; ".join([f"import {m}" for m in sorted(imported)] + [
        "import sys",
        "print(sorted(m for m in sys.modules if m == 'gan_ablate.run' or m.startswith('pytorch_lightning')))"])
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=True).stdout.strip()
    assert loaded == "[]"
