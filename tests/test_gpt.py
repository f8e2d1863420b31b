import pytest
import torch

from nexttok.config import RunConfig
from nexttok.mechanisms import attention_weights
from nexttok.models.gpt import GPT, GPTConfig
from nexttok.objectives import make_view, objective
from nexttok.tokens import Vocab


def model_for(vocab, layers=2, seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab.size, 31, n_layer=layers, n_head=4, n_embd=64))
    for name, p in model.named_parameters():  # larger weights than the init: greedy choices are no near-ties
        if p.dim() == 2:
            p.data.normal_(0, 1.0 if "wte" in name or "wpe" in name else 0.2)
    return model.eval()


def uncached_generate(model, prefix, n_new, temperature=0.0, generator=None):
    """Reference: re-run the whole sequence for every new token."""
    seq = prefix
    for _ in range(n_new):
        logits = model(seq)[:, -1]
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            nxt = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator).squeeze(1)
        seq = torch.cat([seq, nxt[:, None]], 1)
    return seq[:, prefix.shape[1]:]


@torch.no_grad()
def test_kv_cache_generation_equals_uncached(graphs, task):
    vocab = Vocab(task.num_nodes)
    model = model_for(vocab)
    prefix = make_view(graphs, vocab, "forward")[0][:, :27]
    cached = model.generate(prefix, 5)
    assert torch.equal(cached, uncached_generate(model, prefix, 5))
    assert len(torch.unique(cached, dim=0)) > 1  # not a degenerate constant output
    sampled = model.generate(prefix, 5, temperature=1.0, generator=torch.Generator().manual_seed(3))
    reference = uncached_generate(model, prefix, 5, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(sampled, reference)


@torch.no_grad()
def test_attention_probe_recomputes_what_the_fused_kernel_computed(graphs, task):
    """The probe's hook recomputes each layer's softmax from the input the attention module saw: those
    weights, applied to the values and projected, give exactly the module's own (fused) output."""
    vocab = Vocab(task.num_nodes)
    model = model_for(vocab)
    x = make_view(graphs, vocab, "forward")[0]
    seen = {}
    model.blocks[1].attn.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    weights = attention_weights(model, x)
    assert len(weights) == 2 and weights[0].shape == (len(graphs), 4, 31, 31)
    assert torch.allclose(weights[0].sum(-1), torch.ones(()), atol=1e-5)
    assert (weights[0].triu(1) == 0).all()  # causal
    attn, h = model.blocks[1].attn, seen["x"]
    B, T, C = h.shape
    v = attn.qkv(h)[..., 2 * C:].view(B, T, 4, C // 4).transpose(1, 2)
    explicit = attn.proj((weights[1] @ v).transpose(1, 2).reshape(B, T, C))
    assert torch.allclose(explicit, seen["out"], atol=1e-5)
    assert not any(hasattr(b.attn, "weights") for b in model.blocks)  # the model keeps no probe state
    assert not model.blocks[0].attn._forward_hooks  # and the probe's hooks are gone


@torch.no_grad()
def test_teacherless_decoding_is_one_forward_pass(graphs, task):
    vocab = Vocab(task.num_nodes)
    model = model_for(vocab)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    logits, targets, decoded = objective(RunConfig(mode="teacherless")).predict(model, graphs, vocab)
    assert len(calls) == 1
    x = make_view(graphs, vocab, "teacherless")[0]
    assert torch.equal(decoded, model(x)[:, -5:].argmax(-1))
    # and unlike generation, no decoded token is fed back: inputs at target positions stay "$"
    assert (x[:, 27:] == vocab.dummy).all()


def test_sequence_longer_than_block_size_is_refused(task):
    vocab = Vocab(task.num_nodes)
    model = model_for(vocab, layers=1)
    with pytest.raises(ValueError, match="longer than block_size"):
        model(torch.zeros(1, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="not divisible"):
        GPTConfig(24, 31, n_head=5, n_embd=64)


def test_last_block_on_the_graded_positions_only_changes_nothing():
    """With n_out the last block computes only the last n_out positions: the logits and every weight's
    gradient equal those of the full forward pass cut to the same positions."""
    model = GPT(GPTConfig(vocab_size=24, block_size=31, n_layer=2, n_head=4, n_embd=32))
    idx = torch.randint(0, 24, (16, 31))
    target = torch.randint(0, 24, (16, 5))
    grads = []
    for logits in (lambda: model(idx)[:, -5:], lambda: model(idx, n_out=5)):
        model.zero_grad()
        out = logits()
        torch.nn.functional.cross_entropy(out.flatten(0, 1), target.flatten()).backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (full, full_grads), (trimmed, trimmed_grads) = grads
    assert torch.allclose(full, trimmed, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full_grads, trimmed_grads))


def test_rotary_positions_turn_each_pair_of_dims_by_its_angle():
    """rotate (the minus sign folded into the table) is the textbook rotation, float for float, and it is relative:
    a query and a key shifted together by the same positions keep their dot product."""
    from nexttok.models.gpt import rotary_table, rotate

    cfg = GPTConfig(20, 16, n_layer=1, n_head=2, n_embd=16)
    table = rotary_table(cfg)
    t = torch.randn(3, 2, 16, 8)
    hd = 8
    angles = torch.outer(torch.arange(16.0), 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd)))
    x1, x2 = t[..., :4], t[..., 4:]
    textbook = torch.cat([x1 * angles.cos() - x2 * angles.sin(), x2 * angles.cos() + x1 * angles.sin()], -1)
    assert torch.equal(rotate(t, table), textbook)
    q, k = torch.randn(hd), torch.randn(hd)
    at = lambda v, i: rotate(v.view(1, 1, 1, hd), table[:, i : i + 1]).flatten()  # noqa: E731
    assert torch.allclose(at(q, 3) @ at(k, 1), at(q, 10) @ at(k, 8), atol=1e-5)
