"""fastops rejects bad input with a Python exception before any C runs: never a crash."""
import numpy as np
import pytest

fastops = pytest.importorskip(
    "fastops", reason="fastops is not built (python setup.py build_ext --inplace)")
from microgpt_lib import GPTConfig, init_params  # noqa: E402
from microgpt_lib.batches import PaddedBatch  # noqa: E402
from microgpt_lib.rungs.rung5_cython.batched_backend import CythonBackend  # noqa: E402
from microgpt_lib.rungs.rung5_cython.gpt import CythonGPT
from microgpt_lib.rungs.rung5_cython.model import FastopsModel  # noqa: E402

CONFIG = GPTConfig(n_embd=8, n_head=2, n_layer=1, block_size=6, vocab_size=5)


@pytest.fixture
def model():
    return FastopsModel(CONFIG, init_params(CONFIG))


def packed(tokens, targets=None):
    tokens = np.asarray(tokens, dtype=np.int64)
    targets = tokens if targets is None else np.asarray(targets, dtype=np.int64)
    return tokens, targets, np.array([0, len(tokens)], dtype=np.int64)


def test_token_ids_outside_the_vocabulary_are_rejected(model):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.loss(*packed([0, 1, 5]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.loss(*packed([0, 1, 2], [0, -1, 2]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        CythonGPT(CONFIG, init_params(CONFIG)).loss_and_grads([4, 1, 9, 4])


def test_sequences_longer_than_the_block_are_rejected(model):
    with pytest.raises(ValueError, match="block_size"):
        model.loss(*packed([1] * 7))
    backend = CythonBackend(CONFIG, init_params(CONFIG))
    batch = PaddedBatch.from_sequences([[4, 1, 2, 4]], 6)
    batch.tokens = np.zeros((1, 7), dtype=np.int64)
    batch.targets = np.zeros((1, 7), dtype=np.int64)
    batch.mask = np.ones((1, 7))
    with pytest.raises(ValueError, match="block_size"):
        backend.forward_backward(batch)


def test_inconsistent_batches_are_rejected(model):
    tokens, targets, _ = packed([1, 2, 3])
    with pytest.raises(ValueError, match="cu_seqlens"):
        model.loss(tokens, targets, np.array([0, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="differ in length"):
        model.loss(tokens, targets[:2], np.array([0, 3], dtype=np.int64))
    with pytest.raises(ValueError, match="mask"):
        CythonBackend(CONFIG, init_params(CONFIG)).loss(
            PaddedBatch.from_sequences([[4, 1, 4]], 6).__class__(np.zeros((1, 3), np.int64),
                                                   np.zeros((1, 3), np.int64),
                                                   np.array([[1.0, 0.0, 1.0]])))


def test_wrong_dtype_and_wrong_shapes_are_rejected(model):
    tokens, targets, cu = packed([1, 2, 3])
    with pytest.raises(ValueError, match="dtype mismatch"):
        model.loss(tokens.astype(np.int32), targets, cu)
    with pytest.raises((TypeError, ValueError)):
        fastops.matmul_forward(np.ones((3, 4)), np.ones((5, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="columns"):
        fastops.matmul_forward(np.ones((3, 4)), np.ones((5, 3)))
    with pytest.raises(ValueError):
        fastops.matmul_backward(np.ones((3, 6)), np.ones((3, 4)), np.ones((5, 4)), np.ones((5, 4)))
    with pytest.raises(ValueError, match="parameter buffer"):
        fastops.gpt_loss(np.zeros(10), np.zeros(10), model.workspace, tokens, targets, cu, 8, 2, 1,
                         5, 6)
    with pytest.raises(ValueError, match="n_head"):
        fastops.attention_forward(np.ones((3, 5)), np.ones((3, 5)), np.ones((3, 5)), 2)
    with pytest.raises(ValueError, match="float32 or float64"):
        FastopsModel(CONFIG, init_params(CONFIG), dtype=np.float16)


def test_non_contiguous_arrays_are_rejected(model):
    x = np.ones((4, 6))[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        fastops.matmul_forward(x, np.ones((5, 3)))
    with pytest.raises(ValueError, match="contiguous"):
        fastops.rmsnorm_forward(np.ones((6, 4)).T)
    tokens = (np.arange(8, dtype=np.int64) % 5)[::2]
    with pytest.raises(ValueError, match="contiguous"):
        model.loss(tokens, tokens.copy(), np.array([0, 4], dtype=np.int64))


def test_too_small_a_workspace_is_rejected(model):
    tokens, targets, cu = packed([1, 2, 3])
    with pytest.raises(ValueError, match="workspace"):
        fastops.gpt_loss(model.params.data, model.grads.data, np.zeros(3), tokens, targets, cu,
                         8, 2, 1, 5, 6)
