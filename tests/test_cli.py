"""The microgpt command: train, stop, resume, sample; every bad input one line and exit code 2."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from microgpt_lib.checkpoint import load_checkpoint
from microgpt_lib.cli import main

SCENARIO = """
description = "a tiny story"
[data]
path = "story.txt"
documents = "{documents}"
chunk_chars = 15
[model]
n_embd = 8
n_head = 2
n_layer = 1
block_size = 16
[train]
steps = {steps}
batch_size = 4
learning_rate = 0.02
eval_every = 5
"""


def make_scenario(folder: Path, documents: str = "chunks", steps: int = 10) -> str:
    (folder / "story.txt").write_text("the cat sat on the mat and the dog sat on the log.\n" * 20)
    path = folder / f"tiny_{documents}.toml"
    path.write_text(SCENARIO.format(documents=documents, steps=steps))
    return str(path)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained(tmp_path, capsys):
    scenario = make_scenario(tmp_path)
    code, out, _ = run(capsys, "train", "-s", scenario, "--runs-dir", tmp_path / "runs",
                       "--no-progress")
    assert code == 0 and "saved" in out
    return scenario, tmp_path / "runs"


def test_train_writes_last_and_best_and_sample_continues_a_prompt(trained, capsys):
    scenario, runs = trained
    assert load_checkpoint(runs / "tiny_chunks" / "best.safetensors").state["step"] <= 10
    assert load_checkpoint(runs / "tiny_chunks" / "last.safetensors").state["step"] == 10
    code, out, err = run(capsys, "sample", "-s", scenario, "--runs-dir", runs, "-i", "the ",
                         "-n", 3, "--seed", 1)
    assert code == 0 and err == ""
    samples = out.strip().split("\n" + "-" * 40 + "\n")
    assert len(samples) == 3 and all(s.startswith("the ") for s in samples)


def test_chained_sample_reaches_max_chars(trained, capsys):
    scenario, runs = trained
    code, out, _ = run(capsys, "sample", "-s", scenario, "--runs-dir", runs, "-i", "the",
                       "-n", 1, "--chain", "--max-chars", 60, "--no-stop-at-bos", "--seed", 2)
    # 57 new tokens after the 3-character prompt, past the block of 16; a BOS among them
    # adds no character
    assert code == 0 and out.startswith("the") and 16 < len(out.rstrip("\n")) <= 60


@pytest.mark.parametrize("argv, message", [
    (["sample", "-i", ""], "the prompt is empty"),
    (["sample", "-i", "zebra"], "not in the vocabulary"),
    (["sample", "-i", "the cat", "--chain", "--max-chars", 5], "leaves no room"),
    (["sample", "--checkpoint", "nowhere.safetensors"], "no checkpoint at"),
    (["train"], "already holds a run's checkpoints"),
    (["train", "--resume", "--steps", 99], "steps = 10, not 99"),
    (["train", "--resume", "--dtype", "float64"], "resume it in float32"),
])
def test_bad_input_is_one_line_and_exit_code_2(trained, capsys, argv, message):
    scenario, runs = trained
    code, out, err = run(capsys, *argv[:1], "-s", scenario, "--runs-dir", runs, *argv[1:])
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("flag, value", [("--steps", "0"), ("--steps", "2.5"), ("--grad-accum", "-1"),
                                         ("--batch-size", "x"), ("--max-seconds", "nan"),
                                         ("--max-seconds", "0"), ("--backend", "torch")])
def test_a_bad_train_flag_is_one_line_and_exit_code_2(tmp_path, capsys, flag, value):
    scenario = make_scenario(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "-s", scenario, "--runs-dir", str(tmp_path), flag, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and flag in err and err.count("\n") == 1
    assert not (tmp_path / "tiny_chunks").exists()


def test_a_bad_sample_flag_is_one_line_and_exit_code_2(trained, capsys):
    scenario, runs = trained
    for flag, value in [("-t", "-1"), ("-t", "nan"), ("--top-k", "0"), ("-n", "0"),
                        ("--max-chars", "x")]:
        with pytest.raises(SystemExit) as exit_:
            main(["sample", "-s", scenario, "--runs-dir", str(runs), flag, value])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and flag in err and err.count("\n") == 1, err


def test_unknown_scenario_and_missing_checkpoint(tmp_path, capsys):
    code, _, err = run(capsys, "sample", "-s", "no_such_scenario")
    assert code == 2 and "unknown scenario" in err
    scenario = make_scenario(tmp_path)
    code, _, err = run(capsys, "sample", "-s", scenario, "--runs-dir", tmp_path)
    assert code == 2 and "no checkpoint at" in err and "microgpt train" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    code, _, err = run(capsys, "train", "-s", bad, "--runs-dir", tmp_path)
    assert code == 2 and "not valid TOML" in err


def test_a_truncated_checkpoint_is_refused(trained, capsys):
    scenario, runs = trained
    best = runs / "tiny_chunks" / "best.safetensors"
    best.write_bytes(best.read_bytes()[:200])
    code, _, err = run(capsys, "sample", "-s", scenario, "--runs-dir", runs)
    assert code == 2 and "not a readable checkpoint" in err


def test_continuous_text_needs_a_prompt(tmp_path, capsys):
    scenario = make_scenario(tmp_path, "continuous")
    assert run(capsys, "train", "-s", scenario, "--runs-dir", tmp_path, "--no-progress")[0] == 0
    code, _, err = run(capsys, "sample", "-s", scenario, "--runs-dir", tmp_path)
    assert code == 2 and "give a prompt" in err


def test_help_describes_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert all(word in out for word in ("train", "sample", "scenarios", "bench"))


def test_ctrl_c_saves_and_the_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    scenario = make_scenario(tmp_path, steps=600)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "microgpt_lib.cli", "train", "-s", scenario,
               "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--backend", "numpy"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    last = tmp_path / "runs" / "tiny_chunks" / "last.safetensors"
    deadline = time.monotonic() + 60
    while not last.exists() and time.monotonic() < deadline:  # training has started
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume with:" in out and "--resume" in out
    step = load_checkpoint(last).state["step"]
    assert 0 < step < 600
    resumed = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run(command[:-2] + ["--backend", "numpy", "--runs-dir",
                                           str(tmp_path / "whole")],
                           env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    a = load_checkpoint(last).weights.data
    b = load_checkpoint(tmp_path / "whole" / "tiny_chunks" / "last.safetensors").weights.data
    assert (a == b).all()


def test_bench_hands_its_arguments_to_the_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0 and "--rungs" in capsys.readouterr().out
