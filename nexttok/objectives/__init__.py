"""The training objectives, one class each. A run's `mode` names one; `objective(cfg)` builds it.

- forward, reverse, teacherless: the paper's three (next_token.py);
- dropout: teacher forcing with token dropout on the fed-back target tokens (next_token.py);
- hybrid: teacherless copies beside teacher-forced sequences in every batch (next_token.py);
- mtp: multi-token prediction with k heads (multi_token.py);
- diffusion: masked diffusion over the target (diffusion.py);
- bst: the Belief State Transformer (belief_state.py).
"""
from __future__ import annotations

from .base import Objective, position_losses, target_loss
from .belief_state import BeliefState
from .diffusion import MaskedDiffusion
from .multi_token import MultiToken
from .next_token import VIEWS, Forward, Hybrid, Reverse, Teacherless, TokenDropout, make_view

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (
    Forward, Reverse, Teacherless, Hybrid, TokenDropout, MultiToken, MaskedDiffusion, BeliefState)}
MODES = tuple(OBJECTIVES)
# RunConfig fields that only some objectives read -> the modes that read them
OBJECTIVE_FIELDS = {field: tuple(name for name, o in OBJECTIVES.items() if field in o.fields)
                    for o in OBJECTIVES.values() for field in o.fields}
# modes that need a particular network -> the models they can train
OBJECTIVE_MODELS = {name: o.models for name, o in OBJECTIVES.items() if o.models}


def objective(cfg) -> Objective:
    """The objective a (resolved) run config names."""
    return OBJECTIVES[cfg.mode](cfg)


__all__ = ["Objective", "OBJECTIVES", "MODES", "OBJECTIVE_FIELDS", "OBJECTIVE_MODELS", "VIEWS", "objective",
           "make_view", "target_loss", "position_losses"]
