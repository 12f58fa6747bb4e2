"""Token selection and recovery for self-attention pruning: pure batched torch on ``(B, N, C)`` tensors.

Nothing here imports diffusers, so every method can be tested with random tensors.
"""

from prunesched.runtime.tokens.atedm import atedm_plan, attention_map, combine_heads, gwpr, scored_self_attention
from prunesched.runtime.tokens.dato import dato_plan, diff_score
from prunesched.runtime.tokens.random_pruning import random_plan
from prunesched.runtime.tokens.selection import TokenPlan, num_cells
from prunesched.runtime.tokens.sito import sito_plan

__all__ = [
    "TokenPlan",
    "atedm_plan",
    "attention_map",
    "combine_heads",
    "dato_plan",
    "diff_score",
    "gwpr",
    "num_cells",
    "random_plan",
    "scored_self_attention",
    "sito_plan",
]
