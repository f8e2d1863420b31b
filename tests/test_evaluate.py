"""The metrics, checked on stand-in models whose behaviour is known exactly."""
import pytest
import torch
import torch.nn.functional as F

from nexttok.config import RunConfig
from nexttok.evaluate import evaluate
from nexttok.objectives import objective
from nexttok.tokens import Vocab


def score(model, graphs, vocab, mode):
    return evaluate(model, objective(RunConfig(mode=mode)), graphs, vocab)


class ArmFollower(torch.nn.Module):
    """Answers with arm `arm` of each graph (in the mode's target order), teacher-forced or not."""

    def __init__(self, graphs, vocab, arm, reverse=False):
        super().__init__()
        answer = graphs.arms[:, arm]
        self.answer = answer.flip(1) if reverse else answer
        self.vocab = vocab

    def forward(self, idx, n_out=None):  # the tests evaluate one batch: row i is graph i
        return F.one_hot(self.answer, self.vocab.size).float() * 20

    def generate(self, prefix, n_new):
        return self.answer


@pytest.mark.parametrize("mode", ["forward", "reverse", "teacherless"])
def test_metrics_of_known_answers(graphs, task, mode):
    vocab = Vocab(task.num_nodes)
    goal_arm = (graphs.path[:, None, :] == graphs.arms).all(-1).float().argmax(1)
    right = ArmFollower(graphs, vocab, 0, reverse=mode == "reverse")
    right.answer = (graphs.path.flip(1) if mode == "reverse" else graphs.path)
    m = score(right, graphs, vocab, mode)
    assert m["gen_accuracy"] == 1 and m["on_some_arm"] == 1 and m["first_decision_accuracy"] == 1
    assert m["tf_token_accuracy"] == [1.0] * 5 and m["tf_loss"] < 1e-3

    arm0 = ArmFollower(graphs, vocab, 0, reverse=mode == "reverse")
    m = score(arm0, graphs, vocab, mode)
    share = (goal_arm == 0).float().mean().item()
    assert m["gen_accuracy"] == pytest.approx(share) and m["on_some_arm"] == 1
    # every arm starts at the source, so the position that gives the source is always right
    given = 0 if mode != "reverse" else 4
    assert m["gen_token_accuracy"][given] == 1
    assert m["first_decision_accuracy"] == pytest.approx(share)


def test_a_path_on_no_arm(graphs, task):
    vocab = Vocab(task.num_nodes)
    wrong = ArmFollower(graphs, vocab, 0)
    wrong.answer = graphs.path.clone()
    wrong.answer[:, 2] = graphs.arms[:, 1, 2].where(graphs.path[:, 2] != graphs.arms[:, 1, 2], graphs.arms[:, 0, 2])
    m = score(wrong, graphs, vocab, "forward")
    assert m["on_some_arm"] == 0 and m["gen_accuracy"] == 0
    assert m["gen_token_accuracy"] == [1.0, 1.0, 0.0, 1.0, 1.0]


def test_loss_by_position(graphs, task):
    """tf_token_loss is the loss at each target position: ~0 where the stand-in is right, large where not,
    and tf_loss is their mean."""
    vocab = Vocab(task.num_nodes)
    wrong = ArmFollower(graphs, vocab, 0)
    wrong.answer = graphs.path.clone()
    wrong.answer[:, 2] = graphs.arms[:, 1, 2].where(graphs.path[:, 2] != graphs.arms[:, 1, 2], graphs.arms[:, 0, 2])
    m = score(wrong, graphs, vocab, "forward")
    assert [loss > 10 for loss in m["tf_token_loss"]] == [False, False, True, False, False]
    assert m["tf_loss"] == pytest.approx(sum(m["tf_token_loss"]) / 5)
