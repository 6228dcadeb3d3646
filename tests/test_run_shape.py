"""The shape of the run's code: the sweeper checks cells without loading the training code."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEPER = ROOT / "hydra_plugins" / "gan_ablate_sweepers" / "sweepers.py"


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
