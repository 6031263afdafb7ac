"""The benchmark harness: what it measures and reports (never how fast anything is)."""
import json

from microgpt_lib.measure import bench


def test_time_training_counts_only_timed_steps():
    m = bench.time_training("scalar", "e16_L1_b8", steps=4, warmup=1)
    assert m.kind == "train" and len(m.times_ms) == 4
    assert all(t > 0 for t in m.times_ms)
    assert min(m.times_ms) <= m.median <= max(m.times_ms)


def test_time_budget_stops_early_after_the_minimum():
    m = bench.time_training("scalar", "e16_L1_b8", steps=50, warmup=0, max_seconds=0.0, min_steps=2)
    assert len(m.times_ms) == 2


def test_table_reports_speedup_against_the_baseline():
    base = bench.Measurement("scalar", "e16_L1_b8", "train", [10.0, 10.0, 40.0])
    fast = bench.Measurement("fast", "e16_L1_b8", "train", [1.0, 1.0, 1.0])
    table = bench.format_table([base, fast])
    row = [line for line in table.splitlines() if " fast " in line][0]
    assert row.split()[-2:] == ["10.0", "20.0"]  # median 10 / 1, mean 20 / 1


def test_memory_is_measured_in_a_separate_process():
    memory = bench.measure_memory("scalar", "e16_L1_b8", steps=1)
    assert memory["tracemalloc_peak_kib"] > 0
    assert memory["peak_rss_kib"] > memory["tracemalloc_peak_kib"]


def test_cli_prints_a_table_and_saves_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--rungs", "scalar", "--configs", "e16_L1_b8", "--steps", "2", "--warmup", "0",
                "--infer-samples", "2", "--json", str(out)])
    assert "e16_L1_b8" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert {m["kind"] for m in saved["measurements"]} == {"train", "infer"}
    assert saved["environment"]["python"]
