"""The Clever-Hans probes on stand-in models whose mechanism is known."""
import pytest
import torch
import torch.nn.functional as F

from nexttok.config import RunConfig
from nexttok.mechanisms import edge_mass, follow_other_arm, position_gradient_norms
from nexttok.objectives import make_view, objective
from nexttok.tokens import Vocab, prefix_len


def edges_from(idx):
    """(which edge starts at each input token (n, T, E), the children column of the edge list)."""
    E = (idx.shape[1] - 3 - 4) // 3  # the tests use l = 5: T = 3E + 3 + l - 1
    parents, children = idx[:, 0 : 3 * E : 3], idx[:, 1 : 3 * E : 3]
    return idx[:, :, None] == parents[:, None, :], children


class LookUp(torch.nn.Module):
    """Predicts "the child of the token I was given" by reading the edge list."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, idx, n_out=None):
        match, children = edges_from(idx)
        child = torch.where(match.any(-1), children.gather(1, match.float().argmax(-1)), 0)
        logits = F.one_hot(child, self.vocab.size).float()
        return logits[:, -n_out:] if n_out else logits


def look_up_attention(idx):
    """One layer, two heads: head 0 looks from each token at the child token of the edge that starts there,
    head 1 at position 0."""
    match, _ = edges_from(idx)
    n, T = idx.shape
    w = torch.zeros(n, 2, T, T)
    w[:, 0].scatter_(2, (3 * match.float().argmax(-1) + 1)[:, :, None], 1.0)
    w[:, 1, :, 0] = 1.0
    return [w]


def test_probes_see_the_look_up(graphs, task):
    vocab = Vocab(task.num_nodes)
    model = LookUp(vocab)
    attention = edge_mass(look_up_attention(make_view(graphs, vocab, "forward")[0]), graphs)
    P = prefix_len(graphs.edges.shape[1])
    assert attention["outgoing"].shape == attention["incoming"].shape == (1, 2, 2 * P - 1)
    child = int((attention["offsets"] == 1).nonzero())  # offset 1: the child token of the edge
    assert attention["outgoing"][0, 0, child] == 1.0 and attention["incoming"][0, 0, child] == 0.0  # head 0: v's edge
    assert attention["outgoing"][0, 0].sum() == 1.0  # and nowhere else
    # head 1 looks at position 0, which sits at a different offset from v's edge on each graph: spread out
    assert attention["outgoing"][0, 1].sum() == pytest.approx(1.0) and attention["outgoing"][0, 1].max() < 0.5
    assert 0 < attention["uniform"] < 0.05
    probe = follow_other_arm(model, graphs, vocab)
    assert probe == {"follows_swapped_arm": 1.0, "stays_on_goal_arm": 0.0}


def test_a_model_that_ignores_its_inputs_does_not_follow(graphs, task):
    vocab = Vocab(task.num_nodes)
    answer = graphs.path

    class Oracle(torch.nn.Module):
        def forward(self, idx, n_out=None):
            return F.one_hot(answer, vocab.size).float()

    probe = follow_other_arm(Oracle(), graphs, vocab)
    assert probe == {"follows_swapped_arm": 0.0, "stays_on_goal_arm": 1.0}


class ScaledAnswer(torch.nn.Module):
    """logits = w * one_hot(answer): one weight, so each position's gradient is known: ~0 where the answer
    is the target (the loss is saturated), about -1 per graph where it is not."""

    def __init__(self, answer, vocab):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(20.0))
        self.answer, self.vocab = answer, vocab

    def forward(self, idx, n_out=None):
        return self.w * F.one_hot(self.answer, self.vocab.size).float()


def test_gradient_norms_by_position(graphs, task):
    """A fitted position sends (almost) no gradient into the weights, a wrong one does; .grad is untouched."""
    vocab = Vocab(task.num_nodes)
    answer = graphs.path.clone()
    answer[:, 1] = graphs.arms[:, 1, 1].where(graphs.path[:, 1] != graphs.arms[:, 1, 1], graphs.arms[:, 0, 1])
    model = ScaledAnswer(answer, vocab)
    norms = position_gradient_norms(model, objective(RunConfig()), graphs, vocab)
    assert len(norms) == 5
    assert norms[1] == pytest.approx(1.0, rel=1e-3)  # d(loss)/dw = -1 on every graph, averaged
    assert max(norms[:1] + norms[2:]) < 1e-6
    assert model.w.grad is None
