"""How big is one training step's computation graph? Node counts for the graph-autograd rungs.

Chapter 3's argument in one number: the scalar rung makes one `Value` per multiply and add, the
NumPy rungs one `Tensor` per array operation, so their cost per step is (nodes x cost per node).
Chapter 2's `python_fast` takes part through its `loss_graph` (vector nodes, counted as chapter 2
counts them); a rung from another chapter can offer a `graph_nodes(tokens) -> int` method.
"""
from __future__ import annotations

from collections.abc import Sequence

from microgpt_lib.rungs.base import Rung
from microgpt_lib.rungs.rung1_scalar import gpt as scalar_gpt
from microgpt_lib.rungs.rung1_scalar import value as autograd
from microgpt_lib.rungs.rung3_numpy import tensor
from microgpt_lib.rungs.rung3_numpy.gpt import TensorRung


def graph_nodes(model: Rung, tokens: Sequence[int]) -> int | None:
    """Nodes (leaves included) of the graph a step builds on `tokens`; None for a graph-free rung."""
    model.check_tokens(tokens)
    if isinstance(model, scalar_gpt.ScalarGPT):
        loss = scalar_gpt.document_loss(tokens, model.state_dict, model.config)
        return len(autograd.topological_order(loss))
    if isinstance(model, TensorRung):
        return len(tensor.topological_order(model.document_loss(tokens)))
    counter = getattr(model, "graph_nodes", None)
    if callable(counter):
        return counter(tokens)
    loss_graph = getattr(model, "loss_graph", None)
    return len(autograd.topological_order(loss_graph(tokens))) if callable(loss_graph) else None
