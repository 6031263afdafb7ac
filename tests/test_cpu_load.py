"""Reading how busy the cores are, and the thread count a run takes from it."""
import subprocess
import sys

import pytest

from microgpt_lib import cpu_load

STAT = """cpu  100 5 20 800 10 0 5 15 0 0
cpu0 50 2 10 400 5 0 3 5 0 0
cpu1 50 3 10 400 5 0 2 10 0 0
intr 1 2 3
"""


def test_parse_counts_idle_and_iowait_as_free_and_steal_as_busy():
    busy, total, cpus = cpu_load.parse_cpu_times(STAT)
    assert (busy, total, cpus) == (145, 955, 2)


@pytest.mark.parametrize("text", ["", "intr 1 2 3\n", "cpu 1 2\n"])
def test_parse_rejects_what_is_not_proc_stat(text):
    with pytest.raises(ValueError, match="/proc/stat"):
        cpu_load.parse_cpu_times(text)


@pytest.mark.parametrize("wanted, busy, cores, expected", [
    (2, 0.0, 2, 2), (2, 0.25, 2, 2), (2, 0.5, 2, 1), (2, 1.0, 2, 1), (2, 2.0, 2, 1),
    (2, 1.0, 8, 2), (4, 0.0, 2, 2), (1, 0.0, 2, 1), (2, 0.0, 1, 1), (2, None, 2, 2),
    (3, None, 2, 2),
])
def test_threads_give_way_to_other_programs_but_never_drop_below_one(wanted, busy, cores,
                                                                     expected):
    assert cpu_load.threads_to_use(wanted, busy, cores) == expected


def test_no_proc_stat_means_unknown(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_load, "PROC_STAT", tmp_path / "missing")
    assert cpu_load.busy_cores(0.01) is None


@pytest.mark.parametrize("window", [0, -1.0, float("nan")])
def test_window_must_be_positive(window):
    with pytest.raises(ValueError, match="window"):
        cpu_load.busy_cores(window)


@pytest.mark.skipif(not cpu_load.PROC_STAT.exists(), reason="needs Linux's /proc/stat")
def test_a_spinning_program_is_seen_as_a_busy_core():
    spin = subprocess.Popen([sys.executable, "-c", "print('ready', flush=True)\nwhile True: pass"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert spin.stdout.readline().strip() == "ready"
        assert cpu_load.busy_cores(0.3) >= 0.5
    finally:
        spin.kill()
        spin.wait()
