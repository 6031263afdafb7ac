"""Text from a trained model of a scenario: a prompt in, samples out, chained past the context.

Works with any rung of the ladder (it calls `Rung.generate`), so a checkpoint trained with fastops
can be sampled by the scalar rung as well; the command line's `microgpt sample` is this function.
"""
from __future__ import annotations

from typing import Any

from microgpt_lib.rungs.base import Rung
from microgpt_lib.scenarios import Scenario



def sample_text(model: Rung, scenario: Scenario, tokenizer: Any, prompt: str | None = None,
                num_samples: int = 1, temperature: float = 0.8, top_k: int | None = None,
                stop_at_bos: bool = True, max_tokens: int | None = None,
                max_chars: int | None = None, seed: int | None = None) -> list[str]:
    """Samples as text, each the prompt and its continuation, from any rung of a scenario.

    prompt None samples from the start (BOS), which a continuous-text scenario cannot do; an
    empty prompt is refused rather than read as "no prompt". max_chars (prompt included)
    chains the sample past the context with a sliding window; without it max_tokens caps the
    new tokens (None: fill the context once). A BOS kept with stop_at_bos=False adds no text.
    """
    if prompt == "":
        raise ValueError("the prompt is empty; give no prompt to sample from the start")
    if prompt is None and not scenario.bos_first:
        raise ValueError(f"scenario {scenario.name!r} trains on continuous text without BOS: "
                         "give a prompt")
    prompt = prompt or ""
    ids = tokenizer.encode(prompt)
    if max_chars is not None:
        if max_chars <= len(prompt):
            raise ValueError(f"max_chars {max_chars} leaves no room after the prompt of "
                             f"{len(prompt)} characters")
        max_tokens = max_chars - len(prompt)  # a character is at least one token
    samples = model.generate(num_samples, temperature, seed=seed, prompt=ids,
                             bos_first=scenario.bos_first, top_k=top_k,
                             stop_at_bos=stop_at_bos, max_new_tokens=max_tokens)
    # errors="replace": a byte-level sample may end in the middle of a character
    texts = [prompt + tokenizer.decode(sample, errors="replace") for sample in samples]
    return [text[:max_chars] for text in texts] if max_chars is not None else texts
