"""The regression tracker flags a planted 2x slowdown, stays quiet on noise, rejects bad input."""
import json

import numpy as np
import pytest

from microgpt_lib.measure import bench, regression


def payload(times_by_config: dict[str, np.ndarray], rung: str = "cython") -> dict:
    return {"measurements": [{"rung": rung, "config": cfg, "kind": "train",
                              "times_ms": [float(t) for t in times]}
                             for cfg, times in times_by_config.items()]}


def step_times(rng: np.random.Generator, n: int = 60, scale: float = 1.0) -> np.ndarray:
    """Skewed, noisy step times like a shared machine's: a lognormal body around `scale` ms."""
    return scale * rng.lognormal(0.0, 0.25, n)


def test_a_planted_2x_regression_is_detected_and_fails_the_command(tmp_path):
    rng = np.random.default_rng(1)
    old = payload({"e16": step_times(rng), "e64": step_times(rng, scale=3.0)})
    new = payload({"e16": step_times(rng, scale=2.0), "e64": step_times(rng, scale=3.0)})
    by_config = {c.config: c for c in regression.compare(old, new)}
    assert by_config["e16"].verdict == "regression"
    assert 1.6 < by_config["e16"].low < by_config["e16"].ratio < by_config["e16"].high < 2.5
    assert by_config["e64"].verdict.startswith("no change")
    for name, data in (("old.json", old), ("new.json", new)):
        (tmp_path / name).write_text(json.dumps(data))
    status = bench.main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"),
                         "--report", str(tmp_path / "r.md"), "--chart", str(tmp_path / "r.png")])
    assert status == 1
    assert "**regression**" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert bench.main(["compare", str(tmp_path / "old.json"), str(tmp_path / "old.json")]) == 0


def test_two_samples_of_one_distribution_give_no_regression():
    rng = np.random.default_rng(2)
    for _ in range(20):
        old, new = payload({"e16": step_times(rng)}), payload({"e16": step_times(rng)})
        (c,) = regression.compare(old, new)
        assert c.verdict != "regression" and c.low < c.ratio < c.high
    faster = regression.compare(payload({"e16": step_times(rng, scale=2.0)}),
                                payload({"e16": step_times(rng)}))
    assert faster[0].verdict == "improvement"


def test_bad_input_is_rejected(tmp_path):
    good = payload({"e16": [1.0, 1.1, 0.9]})
    with pytest.raises(ValueError, match="threshold"):
        regression.compare(good, good, threshold=1.0)
    with pytest.raises(ValueError, match="in common"):
        regression.compare(good, payload({"e64": [1.0, 1.1]}))
    with pytest.raises(ValueError, match="at least 2"):
        regression.bootstrap_ratio_interval([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        regression.bootstrap_ratio_interval([1.0, -1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="confidence"):
        regression.bootstrap_ratio_interval([1.0, 2.0], [1.0, 2.0], confidence=1.5)
    (tmp_path / "x.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="no benchmark measurements"):
        regression.load_results(tmp_path / "x.json")
    with pytest.raises(ValueError, match="cannot read"):
        regression.load_results(tmp_path / "missing.json")


def test_run_saves_times_with_machine_and_versions(tmp_path):
    out = tmp_path / "results.json"
    assert bench.main(["run", "--rungs", "numpy_kernels", "--configs", "e16_L1_b8", "--steps",
                       "3", "--warmup", "1", "--out", str(out), "--label", "test"]) == 0
    saved = regression.load_results(out)
    assert saved["label"] == "test" and saved["format"] == regression.FORMAT
    assert {"cpu", "software", "environment"} <= set(saved)
    assert "numpy" in saved["software"] and "caches" in saved["cpu"]
    (m,) = saved["measurements"]
    assert (m["rung"], m["config"], len(m["times_ms"])) == ("numpy_kernels", "e16_L1_b8", 3)
