"""Model sizes: the `GPTConfig` every rung of the ladder is built from, and its named presets."""
from __future__ import annotations

from dataclasses import dataclass, replace

# name -> (n_embd, n_head, n_layer, block_size). "e16_L1_b16" is Karpathy's microgpt.
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "e8_L1_b8": (8, 2, 1, 8),  # chapter 2 times its slowest scalar variants on this one
    "e16_L1_b8": (16, 4, 1, 8),
    "e16_L1_b16": (16, 4, 1, 16),
    "e64_L2_b16": (64, 4, 2, 16),
    "e128_L4_b32": (128, 4, 4, 32),
    # chapter 3's width sweep: Karpathy's model made wider, nothing else changed
    "e32_L1_b16": (32, 4, 1, 16),
    "e64_L1_b16": (64, 4, 1, 16),
    "e128_L1_b16": (128, 4, 1, 16),
    "e256_L1_b16": (256, 4, 1, 16),
    "e64_L4_b16": (64, 4, 4, 16),  # makemore's default transformer size (chapter 4)
}


class ConfigError(ValueError):
    """A model configuration that cannot be built."""


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of the GPT (the book's page "The model, exactly"): embedding width, heads, layers, context length, vocabulary."""

    n_embd: int = 16
    n_head: int = 4
    n_layer: int = 1
    block_size: int = 16
    vocab_size: int = 27

    def __post_init__(self) -> None:
        for field in ("n_embd", "n_head", "n_layer", "block_size", "vocab_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{field} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"each head gets n_embd / n_head dimensions"
            )

    @classmethod
    def preset(cls, name: str, vocab_size: int = 27) -> "GPTConfig":
        """The named preset (see `PRESETS`) with the given vocabulary size."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        n_embd, n_head, n_layer, block_size = PRESETS[name]
        return cls(n_embd, n_head, n_layer, block_size, vocab_size)

    def with_(self, **changes: int) -> "GPTConfig":
        """A copy with some sizes changed (validated like a new config)."""
        return replace(self, **changes)

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head

    @property
    def name(self) -> str:
        """Short name in the preset style, e.g. e16_L1_b16."""
        return f"e{self.n_embd}_L{self.n_layer}_b{self.block_size}"

    def param_shapes(self) -> dict[str, tuple[int, int]]:
        """Every weight matrix as (rows, cols) = (out, in), in the specification's initialisation order."""
        e, v = self.n_embd, self.vocab_size
        shapes = {"wte": (v, e), "wpe": (self.block_size, e), "lm_head": (v, e)}
        for i in range(self.n_layer):
            shapes[f"layer{i}.attn_wq"] = (e, e)
            shapes[f"layer{i}.attn_wk"] = (e, e)
            shapes[f"layer{i}.attn_wv"] = (e, e)
            shapes[f"layer{i}.attn_wo"] = (e, e)
            shapes[f"layer{i}.mlp_fc1"] = (4 * e, e)
            shapes[f"layer{i}.mlp_fc2"] = (e, 4 * e)
        return shapes

    @property
    def num_params(self) -> int:
        """Total number of scalar parameters (4,192 for Karpathy's e16_L1_b16 on names)."""
        return sum(r * c for r, c in self.param_shapes().values())
