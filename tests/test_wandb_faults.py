"""W&B never stops a run (issue 17). With credentials present and the W&B server out of reach (a closed port,
or one that accepts and never answers), the start waits at most logger.init_timeout_s, then logs offline with
one warning line that says how to upload later, and the run ends `ok` with every value in its offline files."""
from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import pytest

from conftest import run_train_py
from test_wandb_records import RUN, EVALUATED, assert_every_evaluation_in_wandb, assert_wandb_holds_the_csv_once
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
