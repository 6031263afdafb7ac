"""Chapter 2's intermediate GPTs compute what `scalar` computes; its GC and recursion facts."""
from __future__ import annotations

import gc
import json
import sys

import pytest

from microgpt_lib import GPTConfig, get_rung, init_params
from microgpt_lib.data import names_corpus
from microgpt_lib.gc_pause import gc_paused
from microgpt_lib.measure.bench import count_graph_nodes, main, time_inference
from microgpt_lib.measure.bench import time_interleaved as bench_interleaved
from microgpt_lib.measure.gc_profile import gc_profile_training
from microgpt_lib.measure.gc_stats import GCRecorder
from microgpt_lib.rungs.rung1_scalar.value import Value, topological_order
from microgpt_lib.rungs.rung2_python_fast import variants as pv

VARIANTS = ["ScalarKeepsLastGraphGPT", "ScalarIterativeGPT", "ScalarGCPausedGPT", "ClosureGPT", "SlottedClosureGPT",
            "ScalarFusedGPT", "VectorSoftmaxLossGPT", "PreallocatedCacheGPT", "GraphInferenceGPT"]
CONFIG = GPTConfig(n_embd=8, n_head=2, n_layer=1, block_size=8)


@pytest.fixture(scope="module")
def encoded():
    docs, tok = names_corpus()
    return [tok.encode_doc(d) for d in docs[:3]]


@pytest.fixture(scope="module")
def reference(encoded):
    model = get_rung("scalar")(CONFIG, init_params(CONFIG, seed=1))
    losses = [model.train_step(tokens, 0.01) for tokens in encoded]
    return losses, model.parameters(), model.generate(4, seed=7)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_trains_and_samples_like_scalar(variant, encoded, reference):
    losses_ref, params_ref, samples_ref = reference
    model = getattr(pv, variant)(CONFIG, init_params(CONFIG, seed=1))
    losses = [model.train_step(tokens, 0.01) for tokens in encoded]
    assert max(abs(a - b) for a, b in zip(losses, losses_ref)) < 1e-12
    params = model.parameters()
    assert max(abs(x - y) for name in params for r, s in zip(params[name], params_ref[name])
               for x, y in zip(r, s)) < 1e-12
    assert model.generate(4, seed=7) == samples_ref


def test_dict_tokenizer_matches_index_tokenizer():
    docs, tok = names_corpus()
    for doc in docs[:200]:
        assert pv.tokenize_with_dict(tok.stoi, doc) == pv.tokenize_with_index(tok.chars, doc)


def chain(n: int) -> Value:
    x = Value(1.0)
    for _ in range(n):
        x = x * 1.0
    return x


def test_recursive_topological_sort_hits_the_recursion_limit_and_iterative_does_not():
    depth = sys.getrecursionlimit() + 100
    root = chain(depth)
    with pytest.raises(RecursionError):
        pv.recursive_topological_order(root)
    order = topological_order(root)
    assert order[-1] is root and len(order) == 2 * depth + 1  # each product also holds its 1.0
    pv.backward_iterative(root)


def test_recursive_backward_leaves_cyclic_garbage_and_iterative_does_not(encoded):
    ref = get_rung("scalar")(CONFIG, init_params(CONFIG))
    iterative = pv.ScalarIterativeGPT(CONFIG, init_params(CONFIG))
    closures = pv.SlottedClosureGPT(CONFIG, init_params(CONFIG))
    gc.collect()
    with gc_paused():
        ref.train_step(encoded[0], 0.01)
        left_by_recursive = gc.collect()
        iterative.train_step(encoded[0], 0.01)
        left_by_iterative = gc.collect()
        closures.train_step(encoded[0], 0.01)
        left_by_closures = gc.collect()
    assert left_by_recursive > 1000 and left_by_closures > 1000
    assert left_by_iterative == 0


def test_gc_recorder_sees_collections():
    with GCRecorder() as recorder:
        gc.collect()
    assert recorder.count(2) >= 1 and recorder.total_ms() >= 0


def test_gc_paused_restores_the_collector():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_bench_counts_nodes_and_profiles_gc():
    assert count_graph_nodes("python_fast", "e16_L1_b8", docs=2) < 1000
    assert count_graph_nodes("microgpt_lib.rungs.rung2_python_fast.variants:ScalarFusedGPT", "e16_L1_b8", 2) > 1000
    profile = gc_profile_training("python_fast", "e16_L1_b8", steps=3, warmup=1)
    assert len(profile.step_ms) == 3 and 0 <= profile.gc_share <= 1
    assert time_inference("python_fast", "e16_L1_b8", samples=2, warmup=1).kind == "infer"


def test_bench_resolves_names_and_rejects_unknown():
    assert get_rung("microgpt_lib.rungs.rung2_python_fast.variants:ScalarFusedGPT") is pv.ScalarFusedGPT
    with pytest.raises(ValueError):
        get_rung("no_such_rung")


def test_bench_cli_runs_any_rungs_and_configs(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["--rungs", "python_fast", "microgpt_lib.rungs.rung2_python_fast.variants:VectorSoftmaxLossGPT",
          "--configs", "e16_L1_b8", "--steps", "2", "--warmup", "1", "--infer-samples", "2",
          "--memory", "--json", str(out)])
    table = capsys.readouterr().out
    assert "vector_softmax_loss" in table and "traced MiB" in table
    saved = json.loads(out.read_text())
    assert {m["rung"] for m in saved["measurements"]} == {"python_fast", "vector_softmax_loss"}


def test_interleaved_timing_covers_every_rung_and_rejects_unknown_kind():
    results = bench_interleaved(["python_fast", "microgpt_lib.rungs.rung2_python_fast.variants:VectorSoftmaxLossGPT"],
                                "e16_L1_b8", rounds=2, repeats={"python_fast": 3}, warmup=1,
                                settle=1)
    assert [len(m.times_ms) for m in results] == [6, 2]
    infer = bench_interleaved(["python_fast"], "e16_L1_b8", kind="infer", rounds=2, warmup=0)
    assert infer[0].kind == "infer" and len(infer[0].times_ms) == 2
    with pytest.raises(ValueError):
        bench_interleaved(["python_fast"], "e16_L1_b8", kind="both")


def test_bench_cli_interleaved(capsys):
    main(["--rungs", "python_fast", "microgpt_lib.rungs.rung2_python_fast.variants:PreallocatedCacheGPT",
          "--configs", "e16_L1_b8", "--steps", "2", "--warmup", "1", "--infer-samples", "2",
          "--interleaved", "--repeat", "python_fast=3", "--settle", "1"])
    table = capsys.readouterr().out
    assert "prealloc_kv_cache" in table and "infer" in table
    assert [line.split()[5] for line in table.splitlines()[1:]] == ["6", "2", "6", "2"]


def test_python_fast_sections_train_the_model_and_time_every_phase(encoded):
    from microgpt_lib.measure.profiling import python_fast_step_sections

    config = GPTConfig.preset("e16_L1_b8")
    fast, ref = (get_rung(r)(config, init_params(config, seed=2)) for r in ("python_fast", "scalar"))
    sections = python_fast_step_sections(fast, encoded[:2])
    assert set(sections) == {"forward", "backward", "adam", "matrix arithmetic"}
    assert all(ms > 0 for ms in sections.values())
    for tokens in encoded[:2]:  # timing the arithmetic on its own leaves the training untouched
        ref.train_step(tokens, 0.01)
    assert max(abs(a - b) for name, m in ref.parameters().items()
               for ra, rb in zip(m, fast.parameters()[name]) for a, b in zip(ra, rb)) < 1e-12


def test_graph_nodes_counts_python_fast_as_chapter_2_does():
    from microgpt_lib.measure.bench import build_model
    from microgpt_lib.measure.graph_size import graph_nodes
    model, docs, tok = build_model("python_fast", "e16_L1_b8")
    counts = [graph_nodes(model, tok.encode_doc(d)) for d in docs[:2]]
    assert sum(counts) / 2 == count_graph_nodes("python_fast", "e16_L1_b8", docs=2)
    kernels, _, _ = build_model("numpy_kernels", "e16_L1_b8")
    assert graph_nodes(kernels, tok.encode_doc(docs[0])) is None
