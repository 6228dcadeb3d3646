"""W&B never stops a run (issue 17). With credentials present and the W&B server out of reach (a closed port,
or one that accepts and never answers), the start waits at most logger.init_timeout_s, then logs offline with
one warning line that says how to upload later, and the run ends `ok` with every value in its offline files.
A W&B call that fails later (its service gone) is reported once, and the run still ends `ok`."""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

from conftest import make_cfg, run_train_py
from test_wandb_records import RUN, EVALUATED, assert_every_evaluation_in_wandb, assert_wandb_holds_the_csv_once
import gan_ablate.run
from gan_ablate.loggers import RunWandbLogger
from gan_ablate.run import train
from gan_ablate.wandb_offline import find_run_files

INIT_TIMEOUT_S = 5
API_KEY = "0123456789abcdef" * 2 + "01234567"  # 40 hex characters, as `wandb login` stores: W&B goes online


@contextmanager
def closed_port() -> Iterator[str]:
    """An address on 127.0.0.1 that refuses connections: bound (so no one else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def silent_server() -> Iterator[str]:
    """An address on 127.0.0.1 that accepts connections and never answers."""
    server, stop, accepted = socket.create_server(("127.0.0.1", 0)), threading.Event(), []
    server.settimeout(0.2)  # the accept loop sees `stop` within this

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except socket.timeout:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in [*accepted, server]:
            conn.close()
    assert accepted, "W&B never reached the server: the test proves nothing"


@pytest.mark.slow
@pytest.mark.parametrize("server", [closed_port, silent_server])
def test_a_run_whose_wandb_server_is_out_of_reach_logs_offline_and_ends_ok(tmp_path, monkeypatch, server):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    run_dir = tmp_path / "run"
    with server() as url:
        monkeypatch.setenv("WANDB_BASE_URL", url)
        start = time.monotonic()
        # without the fallback W&B's start fails after its own 90 s, so the limit is well above that
        result = run_train_py(*RUN, "logger.mode=online", f"logger.init_timeout_s={INIT_TIMEOUT_S}",
                              f"hydra.run.dir={run_dir}", timeout=240)
        wall = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert json.loads((run_dir / "result.json").read_text())["status"] == "ok"
    [offline] = [path.parent for path in find_run_files(run_dir) if path.parent.name.startswith("offline-run-")]
    [warning] = [line for line in output.splitlines() if "W&B" in line or "wandb" in line.lower()]
    assert "W&B could not start online" in warning and warning.endswith(f"`wandb sync {offline}`")
    assert "Traceback" not in output
    # the start waited for W&B about init_timeout_s, not W&B's own 90 s: the tiny run trains in seconds, the
    # rest is start-up and, for the silent server, wandb's error report to it on exit (up to 20 s)
    assert wall < INIT_TIMEOUT_S + 70, f"{wall:.0f} s"
    assert_wandb_holds_the_csv_once(run_dir)  # the losses, gradient norms and evaluations, each once
    assert_every_evaluation_in_wandb(run_dir, EVALUATED)


class DyingWandbRun:
    """A W&B run whose service dies at its first `dies_at` call (log, summary or finish): that call and every
    later one raise."""

    def __init__(self, dies_at: str) -> None:
        self.dies_at, self.dead, self.failed_calls = dies_at, False, 0

    def call(self, name: str) -> None:
        self.dead = self.dead or name == self.dies_at
        if self.dead:
            self.failed_calls += 1
            raise ConnectionResetError("wandb-core is gone")

    def log(self, row: dict) -> None:
        self.call("log")

    @property
    def summary(self) -> dict:
        self.call("summary")
        return {}

    def finish(self) -> None:
        self.call("finish")


@pytest.mark.parametrize("dies_at, doing", [("log", "logging"), ("summary", "writing the summary"),
                                            ("finish", "finishing")])
def test_a_wandb_failure_mid_run_or_at_the_end_is_reported_once_and_the_run_ends_ok(tmp_path, monkeypatch, caplog,
                                                                                    dies_at, doing):
    dying = DyingWandbRun(dies_at)
    build_loggers = gan_ablate.run.build_loggers

    def with_dying_wandb(*args):
        return [*build_loggers(*args), RunWandbLogger(tmp_path, "dying", experiment=dying)]

    monkeypatch.setattr(gan_ablate.run, "build_loggers", with_dying_wandb)
    with caplog.at_level(logging.WARNING, logger="gan_ablate"):
        record = train(make_cfg("trainer.max_steps=20", "metrics.every=10", "trainer.log_every_n_steps=1"),
                       tmp_path / "run").data
    assert record["status"] == "ok" and [h["iteration"] for h in record["history"]] == [10, 20]
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "ok"
    [warning] = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    assert warning.startswith(f"W&B failed while {doing} (ConnectionResetError: wandb-core is gone)")
    assert dying.failed_calls == 1  # then W&B is left alone: no later row, summary or finish calls it
