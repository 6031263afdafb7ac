"""The machine's measurements: STREAM kernels reject bad input, OS files parse, peaks are sane."""
import numpy as np
import pytest

fastops = pytest.importorskip(
    "fastops", reason="fastops is not built (python setup.py build_ext --inplace)")
from fastops import _stream  # noqa: E402
from microgpt_lib.measure import bandwidth, cpu_info, fork_join, machine_peaks  # noqa: E402


def test_stream_kernels_reject_bad_input_with_clear_errors():
    with pytest.raises(ValueError, match="unknown kernel"):
        _stream.stream_seconds("saxpy", 100)
    with pytest.raises(ValueError, match=">= 1"):
        _stream.stream_seconds("triad", 0)
    with pytest.raises(ValueError, match=">= 1"):
        _stream.stream_seconds("copy", 100, passes=0)
    with pytest.raises(ValueError, match="num_threads"):
        _stream.stream_seconds("copy", 100, num_threads=0)
    with pytest.raises(ValueError, match="num_threads"):
        _stream.stream_seconds("copy", 100, num_threads=10_000)
    with pytest.raises(ValueError, match="GiB free"):  # more than the machine has
        _stream.stream_seconds("triad", _stream.available_memory_bytes() // 8)
    with pytest.raises(ValueError, match="GiB free"):
        _stream.stream_seconds("triad", 2**62)
    with pytest.raises(ValueError, match="unknown kernel"):
        _stream.stream_bytes("dot", 10)


@pytest.mark.parametrize("n", [1, 3, 1001])
def test_stream_kernels_time_odd_sizes_on_every_thread_count(n):
    for threads in range(1, min(2, n) + 1):
        for kernel in bandwidth.STREAM_KERNELS:
            assert _stream.stream_seconds(kernel, n, threads, passes=2, repeats=1) > 0
    assert _stream.stream_bytes("triad", n) == 24 * n and _stream.stream_bytes("copy", n) == 16 * n


def test_bandwidth_points_and_level_sizes():
    point = bandwidth.measure_point("triad", 48 * 1024, min_seconds=1e-4, repeats=1)
    assert point.gb_per_s > 0 and point.working_set_bytes == 48 * 1024
    levels = [cpu_info.Cache(1, "Data", 32768, 1), cpu_info.Cache(3, "Unified", 1 << 25, 2)]
    assert bandwidth.level_sizes(2, levels) == {"L1d": 32768, "L3": 1 << 24, "DRAM": 1 << 28}
    with pytest.raises(ValueError, match="too small"):
        bandwidth.measure_point("triad", 16, threads=1)
    sizes = bandwidth.sweep_sizes(1024, 8192, per_octave=1)
    assert sizes == [1024, 2048, 4096, 8192]
    with pytest.raises(ValueError):
        bandwidth.sweep_sizes(8192, 1024)


def test_cpu_info_parses_sysfs_notation_and_missing_files(tmp_path):
    assert cpu_info.parse_size("32K") == 32768 and cpu_info.parse_size("32M") == 1 << 25
    assert cpu_info._count_cpus("0-1") == 2 and cpu_info._count_cpus("0,2,4-5") == 4
    index = tmp_path / "index0"
    index.mkdir()
    for name, text in {"level": "2", "type": "Unified", "size": "1024K",
                       "shared_cpu_list": "0"}.items():
        (index / name).write_text(text + "\n")
    assert cpu_info.caches(tmp_path) == [cpu_info.Cache(2, "Unified", 1 << 20, 1)]
    assert cpu_info.caches(tmp_path / "missing") == []
    assert cpu_info.cpu_model_and_flags(str(tmp_path / "missing")) == ("unknown", set())
    assert set(cpu_info.describe_cpu()) >= {"model", "caches", "vector_features", "blas"}
    (tmp_path / "siblings").write_text("0,4\n")
    assert cpu_info.threads_per_core(str(tmp_path / "siblings")) == 2
    assert cpu_info.threads_per_core(str(tmp_path / "missing")) is None


def test_peaks_are_positive_and_restore_the_blas_threshold():
    before = fastops.get_blas_threshold()
    assert machine_peaks.own_kernel_gflops("float32", n=32, min_seconds=1e-3) > 0
    assert fastops.get_blas_threshold() == before
    assert machine_peaks.blas_peak_gflops("float64", 1, n=64, min_seconds=1e-3) > 0
    with pytest.raises(ValueError, match="dtype"):
        machine_peaks.blas_peak_gflops("float16")
    with pytest.raises(ValueError, match=">= 1"):
        machine_peaks.own_kernel_gflops(n=0)
    assert np.isfinite(machine_peaks.best_seconds(lambda: None, 1e-4, 1))


def test_stream_times_give_one_timing_per_repeat_and_regions_cost_time():
    times = _stream.stream_times("add", 64, 1, passes=3, repeats=4)
    assert len(times) == 4 and min(times) > 0
    assert fork_join.region_seconds(1, repeats=5) > 0
    with pytest.raises(ValueError, match="threads"):
        fork_join.region_seconds(0)
    with pytest.raises(ValueError, match="repeats"):
        fork_join.region_seconds(1, repeats=0)
