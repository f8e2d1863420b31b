import pytest
import torch
import torch.nn.functional as F

from nexttok.models.gpt import GPT, GPTConfig
from nexttok.objectives import make_view, target_loss, position_losses
from nexttok.tokens import Vocab, encode, prefix_len


def test_layout_of_g25(graphs, task):
    vocab = Vocab(task.num_nodes)
    seq = encode(graphs, vocab)
    assert seq.shape == (len(graphs), 27 + 5) and prefix_len(8) == 27
    g = 0
    text = vocab.decode(seq[g])
    e = graphs.edges[g].tolist()
    expected = " | ".join(f"{u} {v}" for u, v in e) + f" / {graphs.source[g]} {graphs.goal[g]} = " + " ".join(map(str, graphs.path[g].tolist()))
    assert text == expected
    assert vocab.size == 24 and {vocab.pipe, vocab.eq, vocab.slash, vocab.dummy} == {20, 21, 22, 23}
    assert torch.equal(encode(graphs, vocab, reverse=True)[:, -5:], graphs.path.flip(1))


def test_views(graphs, task):
    vocab = Vocab(task.num_nodes)
    seq = encode(graphs, vocab)
    x, y = make_view(graphs, vocab, "forward")
    assert torch.equal(x, seq[:, :-1]) and torch.equal(y, graphs.path)
    xr, yr = make_view(graphs, vocab, "reverse")
    assert torch.equal(xr[:, :27], x[:, :27]) and torch.equal(yr, graphs.path.flip(1))
    assert torch.equal(xr[:, 27:], graphs.path.flip(1)[:, :-1])  # teacher forcing: true tokens as inputs
    xt, yt = make_view(graphs, vocab, "teacherless")
    assert torch.equal(xt[:, :27], x[:, :27]) and (xt[:, 27:] == vocab.dummy).all() and torch.equal(yt, y)
    with pytest.raises(ValueError, match="unknown view"):
        make_view(graphs, vocab, "sideways")


@pytest.mark.parametrize("mode", ["forward", "reverse", "teacherless"])
def test_loss_covers_exactly_the_target_positions(graphs, task, mode):
    """The loss equals a cross-entropy over the whole sequence with every prefix target masked out,
    and the prefix outputs get no gradient."""
    vocab = Vocab(task.num_nodes)
    model = GPT(GPTConfig(vocab.size, 31, n_layer=1, n_head=2, n_embd=32))
    x, y = make_view(graphs, vocab, mode)
    full = model(x)
    full.retain_grad()
    masked = encode(graphs, vocab, reverse=mode == "reverse")[:, 1:].clone()
    masked[:, : 27 - 1] = -100
    reference = F.cross_entropy(full.flatten(0, 1), masked.flatten(), ignore_index=-100)
    ours = target_loss(full[:, -5:], y)
    assert torch.allclose(ours, reference)
    assert torch.allclose(model(x, n_out=5), full[:, -5:], atol=1e-6)
    ours.backward()
    assert (full.grad[:, :-5] == 0).all() and (full.grad[:, -5:] != 0).any()


def test_one_position_alone_and_losses_by_position(graphs, task):
    """only_position=i grades target position i alone; position_losses splits the loss by position."""
    vocab = Vocab(task.num_nodes)
    model = GPT(GPTConfig(vocab.size, 31, n_layer=1, n_head=2, n_embd=32))
    x, y = make_view(graphs, vocab, "forward")
    logits = model(x, n_out=5)
    by_position = position_losses(logits, y)
    assert by_position.shape == (5,)
    assert torch.allclose(by_position.mean(), target_loss(logits, y))
    for i in range(1, 6):
        assert torch.allclose(target_loss(logits, y, only_position=i), by_position[i - 1])
    logits.retain_grad()
    target_loss(logits, y, only_position=2).backward()
    graded = (logits.grad != 0).flatten(2).any(-1).any(0)
    assert graded.tolist() == [False, True, False, False, False]
