"""The installed package runs anywhere: a wheel built from this checkout, installed into a fresh venv, runs
`gan-ablate` (one run, a grid sweep, the ablation sweeper on joblib) and `gan-ablate-report` from an empty
folder, with configs, plugins and code all read from the venv and the checkout nowhere on sys.path."""
import importlib.util
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from omegaconf import OmegaConf

from gan_ablate.record import load_records

pytestmark = pytest.mark.slow
QUICK = ["trainer.max_steps=20", "logger=csv", "trainer.enable_progress_bar=false"]
# PYTHONPATH would put a checkout before the wheel (the suite is run with PYTHONPATH=<checkout>)
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}


def run(*cmd, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def build_wheel(tmp_path: Path) -> Path:
    """From a copy of the files git knows (tracked or new, not ignored): setuptools builds in the source
    folder (build/, *.egg-info), which must not be the checkout's."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    source = tmp_path / "source"
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # not a tracked file deleted in the working tree
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
        "-w", tmp_path / "dist", source, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("gan_ablate-*.whl")
    return wheel


def venv_with(wheel: Path, venv: Path) -> Path:
    """A fresh venv holding the wheel; its dependencies come from this interpreter's site-packages, added
    by a plain path line in a .pth file: such a path's own .pth files are not run, so an editable install
    there (its finder hook sits in a .pth) stays out. Returns the venv's site-packages."""
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv.parent)
    [purelib] = (venv / "lib").glob("python*/site-packages")
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # --ignore-installed: leave alone a gan-ablate that pip sees in those dependency folders
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", "--no-index",
        "--ignore-installed", wheel, cwd=venv.parent)
    return purelib


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None,
                    reason="setuptools is not installed here: offline, pip cannot build a wheel without it")
def test_the_wheel_runs_from_any_folder_without_the_checkout(tmp_path):
    purelib = venv_with(build_wheel(tmp_path), tmp_path / "venv")
    bin_dir = tmp_path / "venv" / "bin"
    assert (bin_dir / "gan-ablate").is_file() and (bin_dir / "gan-ablate-report").is_file(), "console scripts"
    work = tmp_path / "work"
    work.mkdir()

    imported = run(bin_dir / "python", "-c", "import sys, gan_ablate, hydra_plugins.gan_ablate_sweepers as p; "
                   "print(gan_ablate.__file__, p.__file__, any('__editable__' in m for m in sys.modules))", cwd=work)
    package, plugins, editable_finder = imported.stdout.split()
    assert Path(package).is_relative_to(purelib) and Path(plugins).is_relative_to(purelib)
    assert editable_finder == "False"

    assert "== Config groups" in run(bin_dir / "gan-ablate", "--help", cwd=work).stdout

    run(bin_dir / "gan-ablate", *QUICK, cwd=work)
    [record] = load_records(work / "outputs")
    assert record.status == "ok" and record.iterations == 20
    hydra = OmegaConf.load(record.run_dir / ".hydra" / "hydra.yaml").hydra
    [conf_dir] = [s.path for s in hydra.runtime.config_sources if s.provider == "main"]
    assert Path(conf_dir) == purelib / "gan_ablate" / "conf"  # the wheel's configs, not the checkout's

    run(bin_dir / "gan-ablate", "-m", "seed=0,1", *QUICK, cwd=work)  # the grid sweeper: a plugin from the wheel
    [sweep] = (work / "multirun").glob("*/*")
    assert sorted((r.seed, r.status) for r in load_records(sweep)) == [(0, "ok"), (1, "ok")]
    run(bin_dir / "gan-ablate-report", sweep.relative_to(work), cwd=work)
    assert "| baseline | 2 |" in (sweep / "report.md").read_text()

    ablation = run(bin_dir / "gan-ablate", "-m", "hydra/sweeper=ablation", "hydra/launcher=joblib",
                   "ablation.tricks=[instance_noise]", "ablation.seeds=1", *QUICK,
                   "hydra.sweep.dir=ablation", cwd=work)
    assert "Joblib.Parallel" in ablation.stdout + ablation.stderr
    assert sorted((r.cell, r.status) for r in load_records(work / "ablation")) == [
        ("+instance_noise", "ok"), ("baseline", "ok")]
    assert sorted(p.name for p in work.iterdir()) == ["ablation", "multirun", "outputs"]  # all under the folder
