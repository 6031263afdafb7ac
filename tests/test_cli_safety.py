"""The command-line tools: a bad flag is one line and exit code 2, outputs never overwrite or land
in the repository by default, and Ctrl-C saves what the run has, marked partial, with exit 130."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from microgpt_lib.measure import bench
from microgpt_lib.rungs.rung5_cython.batched_backend import CythonBackend
from microgpt_lib.train import makemore
from microgpt_lib.train.batched import BatchedHistory

REPO = Path(__file__).resolve().parent.parent


def one_line_error(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err, err
    return err


@pytest.mark.parametrize("argv", [
    ["--steps", "0"], ["--steps", "-3"], ["--steps", "2.5"], ["--lr", "nan"], ["--lr", "-1e-3"],
    ["--lr", "inf"], ["--weight-decay", "-0.1"], ["--backend", "torch"], ["--bogus"],
])
def test_makemore_rejects_a_bad_flag_in_one_line(capsys, argv):
    one_line_error(capsys, makemore.main, argv)


@pytest.mark.parametrize("argv", [
    ["--steps", "0"], ["--warmup", "-1"], ["--max-seconds", "0"], ["--max-seconds", "nan"],
    ["--infer-samples", "x"], ["--rungs", "nope"], ["--configs", "e1_L1_b1"],
    ["--interleaved", "--repeat", "scalar=0"], ["--interleaved", "--repeat", "scalar"],
    ["--rungs", "no.such.module:Class"],
])
def test_bench_rejects_a_bad_flag_in_one_line(capsys, argv):
    one_line_error(capsys, bench.main, argv)


def test_outputs_are_checked_before_the_run(capsys, tmp_path, monkeypatch):
    """An existing file, a folder or an unwritable place is refused before any work starts."""
    ran = []
    monkeypatch.setattr(makemore, "makemore_run", lambda *a, **k: ran.append(1))
    monkeypatch.setattr(bench, "iter_benchmark", lambda *a, **k: ran.append(1) or [])
    existing = tmp_path / "old.json"
    existing.write_text('{"kept": true}')
    for main in (makemore.main, bench.main):
        assert "exists" in one_line_error(capsys, main, ["--json", str(existing)])
        assert "folder" in one_line_error(capsys, main, ["--json", str(tmp_path)])
        one_line_error(capsys, main, ["--json", "/proc/no/such/place.json"])
    assert not ran and existing.read_text() == '{"kept": true}'


def records_state() -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (REPO / "chapters" / "records").iterdir()}


def test_makemore_writes_into_runs_by_default_and_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records = records_state()
    argv = ["--steps", "2", "--backend", "cython"]
    makemore.main(argv)
    saved = list((tmp_path / "runs").glob("ch4_makemore_2steps_*.json"))
    assert len(saved) == 1
    first = json.loads(saved[0].read_text())
    assert first["steps"] == 2 and first["partial"] is False
    with pytest.raises(SystemExit) as caught:
        makemore.main(argv)
    assert caught.value.code == 2 and saved[0].read_text() == json.dumps(first, indent=1) + "\n"
    short = BatchedHistory(losses=[3.0], seconds=[0.5], val_steps=[0], val_losses=[3.1])
    monkeypatch.setattr(makemore, "makemore_run", lambda *a, **k: (None, short, 2.9))
    makemore.main(argv + ["--overwrite"])
    assert json.loads(saved[0].read_text())["final_val_loss"] == 2.9
    assert records_state() == records  # the chapter's committed records are untouched


def test_makemore_interrupted_saves_a_partial_record_and_exits_130(tmp_path, monkeypatch):
    calls = []
    real = CythonBackend.forward_backward

    def interrupted_at_step_3(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(CythonBackend, "forward_backward", interrupted_at_step_3)
    out = tmp_path / "run.json"
    with pytest.raises(SystemExit) as caught:
        makemore.main(["--steps", "50", "--backend", "cython", "--json", str(out)])
    assert caught.value.code == 130
    record = json.loads(out.read_text())
    assert record["partial"] is True and record["steps"] == 2
    assert record["final_val_loss"] is None and record["train_seconds"] > 0


def test_makemore_diverging_run_exits_1_and_saves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(CythonBackend, "forward_backward", lambda self, batch: float("nan"))
    out = tmp_path / "run.json"
    with pytest.raises(SystemExit) as caught:
        makemore.main(["--steps", "5", "--backend", "cython", "--json", str(out)])
    assert caught.value.code == 1 and not out.exists()
    message = capsys.readouterr().err.splitlines()[-1]  # after the progress bar's line
    assert message.startswith(makemore.PROG) and "diverged at step 1" in message


def test_bench_interrupted_saves_what_it_measured(tmp_path, monkeypatch, capsys):
    real, calls = bench.time_training, []

    def interrupted_second_time(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "time_training", interrupted_second_time)
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as caught:
        bench.main(["--rungs", "numpy_kernels", "cython", "--configs", "e8_L1_b8", "--steps", "2",
                    "--warmup", "0", "--json", str(out)])
    assert caught.value.code == 130
    saved = json.loads(out.read_text())
    assert saved["partial"] is True
    assert [m["rung"] for m in saved["measurements"]] == ["numpy_kernels"]
    assert "interrupted after 1 measurements" in capsys.readouterr().err


def test_ctrl_c_on_a_real_makemore_process_saves_a_partial_record(tmp_path):
    """SIGINT to a running `python -m microgpt_lib.train.makemore`: exit 130, valid JSON, partial."""
    pytest.importorskip("fastops", reason="fastops is not built: run `make build`")
    out = tmp_path / "run.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "microgpt_lib.train.makemore", "--steps", "1000000",
         "--backend", "cython", "--json", str(out)],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        seen, deadline = b"", time.monotonic() + 60
        while not re.search(rb"[1-9]\d*/1000000", seen):  # the progress bar shows a step done
            assert proc.poll() is None and time.monotonic() < deadline, seen.decode()[-500:]
            seen += proc.stderr.read1(4096)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    record = json.loads(out.read_text())
    assert record["partial"] is True and record["steps"] >= 1
