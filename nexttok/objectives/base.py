"""What every objective is: how it turns a batch of graphs into a training loss, what it grades, and how it
decodes a path on its own. The training loop, the evaluation and the probes ask these three questions and
never look at a mode's name.

Positions are target positions 1..l, in the objective's target order (goal first when `reverse`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..graphs import Graphs, PathStar
from ..models import build_model
from ..tokens import Vocab, encode, prefix_len


def target_loss(logits: torch.Tensor, targets: torch.Tensor,
                only_position: int = 0) -> torch.Tensor:
    """Mean cross-entropy over the target positions; logits (n, l, V) are the last l
    outputs. only_position=i (1-based) grades target position i alone; the others get no
    gradient."""
    if only_position:
        graded = slice(only_position - 1, only_position)
        logits, targets = logits[:, graded], targets[:, graded]
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def position_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(l,) mean cross-entropy at each target position."""
    return F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none").mean(0)


class Objective:
    """One training objective. Subclasses set `name` and override what differs.

    - `loss(model, graphs, vocab, generator)`: the training loss of one batch (`generator` is the step's own
      randomness, a pure function of seed and step, so a resumed run draws what it would have drawn);
    - `graded(model, graphs, vocab)`: (logits (n, l, V), targets (n, l)) on the objective's own deterministic
      view of the target: its teacher-forced accuracy and loss per position come from here;
    - `decode(model, graphs, vocab)`: (n, l) tokens the model writes alone from the prefix;
    - `build(cfg, vocab, task)`: the network it trains (the config's model unless it needs its own).
    """

    name = ""
    reverse = False  # the target is written goal -> source
    models = None  # the models it can train (None: every model)
    fields: tuple[str, ...] = ()  # RunConfig fields of its own

    def __init__(self, cfg):
        self.cfg = cfg

    def sequence(self, graphs: Graphs, vocab: Vocab) -> torch.Tensor:
        """(n, P + l): the prefix, then the target in this objective's order."""
        return encode(graphs, vocab, reverse=self.reverse)

    def input_len(self, task: PathStar) -> int:
        """The longest input the model reads: the prefix and all but the last target token."""
        return prefix_len(task.num_edges) + task.path_len - 1

    def build(self, cfg, vocab: Vocab, task: PathStar):
        return build_model(cfg, vocab.size, self.input_len(task))

    def loss(self, model, graphs: Graphs, vocab: Vocab, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def graded(self, model, graphs: Graphs, vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode(self, model, graphs: Graphs, vocab: Vocab) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, model, graphs: Graphs, vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(graded logits, targets, decoded tokens): what the evaluation reads."""
        logits, targets = self.graded(model, graphs, vocab)
        return logits, targets, self.decode(model, graphs, vocab)
