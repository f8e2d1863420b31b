"""The Mamba model on the CPU: its scan against the recurrence written out, its parameter names against
mamba_ssm's, and the model's forward, backward, generation and teacherless decoding."""
import pytest
import torch
import torch.nn.functional as F

from nexttok.config import RunConfig
from nexttok.objectives import objective
from nexttok.models.mamba import MambaLM, MambaLMConfig, selective_scan
from nexttok.objectives import make_view
from nexttok.tokens import Vocab

from conftest import tiny_config


def reference_scan(x, delta, A, B, C, D):
    """The selective SSM, one scalar state at a time: h[e,n] <- exp(delta[e] A[e,n]) h[e,n] + delta[e] B[n] x[e]."""
    batch, L, E = x.shape
    N = A.shape[1]
    y = torch.zeros(batch, L, E, dtype=torch.float64)
    for b in range(batch):
        h = [[0.0] * N for _ in range(E)]
        for t in range(L):
            for e in range(E):
                out = 0.0
                for n in range(N):
                    d = float(delta[b, t, e])
                    h[e][n] = torch.exp(torch.tensor(d * float(A[e, n]), dtype=torch.float64)).item() * h[e][n] + d * float(B[b, t, n]) * float(x[b, t, e])
                    out += float(C[b, t, n]) * h[e][n]
                y[b, t, e] = out + float(D[e]) * float(x[b, t, e])
    return y


def test_scan_matches_the_plain_recurrence():
    g = torch.Generator().manual_seed(0)
    batch, L, E, N = 2, 7, 3, 4
    x = torch.randn(batch, L, E, generator=g)
    delta = F.softplus(torch.randn(batch, L, E, generator=g))
    A = -torch.rand(E, N, generator=g) * 2
    B, C = torch.randn(batch, L, N, generator=g), torch.randn(batch, L, N, generator=g)
    D = torch.randn(E, generator=g)
    assert torch.allclose(selective_scan(x, delta, A, B, C, D).double(), reference_scan(x, delta, A, B, C, D), atol=1e-5)


def test_scan_matches_mambapys_parallel_scan():
    cfg = MambaLMConfig(vocab_size=24, block_size=31, n_layer=1, d_model=16)
    block = MambaLM(cfg, use_cuda_kernels=False).backbone.layers[0].mixer
    x = torch.randn(3, 31, 16)
    ours = block(x)
    del block.selective_scan  # back to the class's own (parallel) scan
    assert torch.allclose(ours, block(x), atol=1e-5)


# mamba_ssm 2.x: Mamba(d_model, d_state=16, d_conv=4, expand=2), dt_rank = ceil(d_model / 16), no biases
# on in_proj / out_proj; MambaLMHeadModel names its modules backbone.embedding / layers.i.{norm,mixer} / norm_f
MAMBA_SSM_BLOCK = {
    "in_proj.weight": lambda d: (4 * d, d), "conv1d.weight": lambda d: (2 * d, 1, 4), "conv1d.bias": lambda d: (2 * d,),
    "x_proj.weight": lambda d: (-(-d // 16) + 32, 2 * d), "dt_proj.weight": lambda d: (2 * d, -(-d // 16)),
    "dt_proj.bias": lambda d: (2 * d,), "A_log": lambda d: (2 * d, 16), "D": lambda d: (2 * d,),
    "out_proj.weight": lambda d: (d, 2 * d),
}


def test_state_dict_matches_mamba_ssm():
    d = 48
    model = MambaLM(MambaLMConfig(vocab_size=24, block_size=31, n_layer=2, d_model=d), use_cuda_kernels=False)
    expected = {"backbone.embedding.weight": (24, d), "backbone.norm_f.weight": (d,)}
    for i in range(2):
        expected[f"backbone.layers.{i}.norm.weight"] = (d,)
        expected.update({f"backbone.layers.{i}.mixer.{k}": shape(d) for k, shape in MAMBA_SSM_BLOCK.items()})
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_forward_backward_generation_and_teacherless(graphs, task):
    vocab = Vocab(task.num_nodes)
    torch.manual_seed(0)
    model = MambaLM(MambaLMConfig(vocab.size, 31, n_layer=2, d_model=32), use_cuda_kernels=False)
    x, y = make_view(graphs, vocab, "forward")
    logits = model(x, n_out=5)
    assert logits.shape == (len(graphs), 5, vocab.size)
    F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # causal: changing a later token leaves earlier outputs alone
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % task.num_nodes
    assert torch.allclose(model(x)[:, :-1], model(x2)[:, :-1], atol=1e-6)
    # one token at a time through the recurrent state gives the logits of the whole-sequence pass
    states = [None] * 2
    stepped = torch.stack([model.step(x[:, t], states) for t in range(x.shape[1])], dim=1)
    assert torch.allclose(stepped, model(x), atol=1e-5)
    # generation (through the recurrent state) equals re-reading the sequence by hand
    model.eval()
    prefix = x[:, :27]
    out = model.generate(prefix, 5)
    seq = prefix
    for _ in range(5):
        seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, seq[:, 27:])
    _, _, decoded = objective(RunConfig(mode="teacherless")).predict(model, graphs, vocab)
    assert torch.equal(decoded, model(make_view(graphs, vocab, "teacherless")[0])[:, -5:].argmax(-1))


def test_mamba_trains_through_the_run_config():
    from nexttok.train import train

    run, metrics = train(tiny_config(model="mamba", steps=4), progress=False)
    assert isinstance(run.model, MambaLM) and metrics["steps"] == 4
    no_decay = {id(p) for p in run.optimizer.param_groups[1]["params"]}
    assert all(id(b.mixer.A_log) in no_decay and id(b.mixer.D) in no_decay for b in run.model.backbone.layers)
