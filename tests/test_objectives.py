"""Each objective on its own: what it may see (no information leaks), its masks and decoding on inputs built by
hand, and that its loss falls on a tiny run."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nexttok import PathStar, RunConfig, sample, seeded_generator
from nexttok.objectives import OBJECTIVES, make_view, objective
from nexttok.objectives.belief_state import pairs
from nexttok.tokens import Vocab, prefix_len
from nexttok.resolve import resolve
from nexttok.train import Run, train

from conftest import tiny_config

TASK = PathStar(2, 4, 12)
VOCAB = Vocab(12)
P, L = prefix_len(TASK.num_edges), TASK.path_len


def setup(mode, **extra):
    cfg = resolve(RunConfig(mode=mode, deg=2, path_len=4, num_nodes=12, layers=2, dim=32, heads=2, **extra))
    torch.manual_seed(0)
    obj = objective(cfg)
    model = obj.build(cfg, VOCAB, TASK).eval()
    for name, p in model.named_parameters():  # larger weights than the init, so every input matters
        if p.dim() == 2:
            p.data.normal_(0, 0.5)
    return obj, model, sample(TASK, 16, seeded_generator(0, "leak"))


def with_target(graphs, position, other):
    """The graphs with target token `position` (1-based, forward order) replaced by `other` (n,)."""
    changed = graphs[:]
    changed.path = graphs.path.clone()
    changed.path[:, position - 1] = other
    return changed


def other_labels(graphs, position):
    """A label for each graph that differs from its target token at `position`."""
    return (graphs.path[:, position - 1] + 1) % TASK.num_nodes


@torch.no_grad()
@pytest.mark.parametrize("mode", ["forward", "dropout", "mtp", "bst"])
def test_next_token_predictions_never_see_the_token_they_predict(mode):
    """Teacher forcing feeds tokens 1..i-1 to predict token i: changing token j leaves every prediction of
    tokens 1..j unchanged (and, for mtp, head h's prediction of token i sees tokens 1..i-h only)."""
    obj, model, graphs = setup(mode)
    for j in range(1, L + 1):
        changed = with_target(graphs, j, other_labels(graphs, j))
        a, b = obj.graded(model, graphs, VOCAB)[0], obj.graded(model, changed, VOCAB)[0]
        assert torch.allclose(a[:, :j], b[:, :j], atol=1e-5), f"token {j} leaked into the predictions of 1..{j}"
        assert not torch.allclose(a[:, j:], b[:, j:], atol=1e-5) or j == L, "later predictions do read it"
    if mode == "mtp":
        inputs, targets = make_view(graphs, VOCAB, "forward")
        for j in range(1, L + 1):
            changed = with_target(graphs, j, other_labels(graphs, j))
            heads_a = obj.head_logits(model, inputs, L)
            heads_b = obj.head_logits(model, make_view(changed, VOCAB, "forward")[0], L)
            for h, (x, y) in enumerate(zip(heads_a, heads_b), start=1):
                # head h predicts token i from the position that holds token i - h: it has seen tokens < i - h + 1
                safe = min(L, j + h - 1)
                assert torch.allclose(x[:, :safe], y[:, :safe], atol=1e-5), f"head {h}: token {j} leaked"


@torch.no_grad()
def test_teacherless_sees_no_target_token():
    obj, model, graphs = setup("teacherless")
    changed = with_target(with_target(graphs, 2, other_labels(graphs, 2)), 3, other_labels(graphs, 3))
    assert torch.equal(obj.graded(model, graphs, VOCAB)[0], obj.graded(model, changed, VOCAB)[0])


@torch.no_grad()
def test_reverse_predictions_see_only_the_tokens_before_them():
    """Reversed, target position i holds the path's node l+1-i: changing that node leaves positions <= i alone."""
    obj, model, graphs = setup("reverse")
    for i in range(1, L + 1):
        node = L + 1 - i  # forward position of the token at reverse position i
        changed = with_target(graphs, node, other_labels(graphs, node))
        a, b = obj.graded(model, graphs, VOCAB)[0], obj.graded(model, changed, VOCAB)[0]
        assert torch.allclose(a[:, :i], b[:, :i], atol=1e-5)


def test_token_dropout_replaces_fed_back_tokens_only():
    obj, _, graphs = setup("dropout", input_dropout=0.5)
    inputs, targets = obj.inputs(graphs, VOCAB, torch.Generator().manual_seed(0))
    clean, _ = make_view(graphs, VOCAB, "forward")
    assert torch.equal(inputs[:, :P], clean[:, :P])  # the prefix is never touched
    fed = inputs[:, P:]
    dropped = fed == VOCAB.dummy
    assert torch.equal(fed[~dropped], clean[:, P:][~dropped]) and 0.3 < dropped.float().mean() < 0.7
    for p, expect in ((0.0, clean), (1.0, make_view(graphs, VOCAB, "teacherless")[0])):
        obj.cfg = dataclasses.replace(obj.cfg, input_dropout=p)
        assert torch.equal(obj.inputs(graphs, VOCAB, torch.Generator().manual_seed(0))[0], expect)


def test_diffusion_masks_by_hand_and_never_reads_a_masked_token():
    obj, model, graphs = setup("diffusion")
    seq = obj.sequence(graphs, VOCAB)
    mask = torch.zeros(len(graphs), L, dtype=torch.bool)
    mask[:, [1, 2]] = True
    x = obj.masked(seq, mask, VOCAB)
    assert torch.equal(x[:, :P], seq[:, :P]) and (x[:, P + 1 : P + 3] == VOCAB.dummy).all()
    assert torch.equal(x[:, [P, P + 3]], seq[:, [P, P + 3]])
    # whatever the true tokens under the mask are, the model's input, and so every prediction, is the same
    changed = with_target(with_target(graphs, 2, other_labels(graphs, 2)), 3, other_labels(graphs, 3))
    with torch.no_grad():
        a = model(x, n_out=L, causal=False)
        b = model(obj.masked(obj.sequence(changed, VOCAB), mask, VOCAB), n_out=L, causal=False)
    assert torch.equal(a, b)
    # and attention is not causal: the last target token changes the prediction at the first masked one
    with torch.no_grad():
        c = model(obj.masked(obj.sequence(with_target(graphs, 4, other_labels(graphs, 4)), VOCAB), mask, VOCAB),
                  n_out=L, causal=False)
    assert not torch.allclose(a[:, 1], c[:, 1])


def test_diffusion_elbo_weighs_each_sequence_by_one_over_its_rate_by_hand():
    """The ELBO weighting: each sequence's masked cross-entropy summed, over r * l (r floored at 1/l); the token
    weighting: the mean over every masked token of the batch. Both from the same draw of rates and masks."""
    obj, model, graphs = setup("diffusion", diffusion_weight="elbo", diffusion_schedule="uniform")
    seq, n = obj.sequence(graphs, VOCAB), len(graphs)
    draw = torch.Generator().manual_seed(3)
    rate = 1 - torch.rand(n, 1, generator=draw)
    mask = torch.rand(n, L, generator=draw) < rate
    with torch.no_grad():
        ce = F.cross_entropy(model(obj.masked(seq, mask, VOCAB), n_out=L, causal=False).transpose(1, 2), seq[:, -L:],
                             reduction="none")
        elbo = obj.loss(model, graphs, VOCAB, torch.Generator().manual_seed(3))
        token = objective(dataclasses.replace(obj.cfg, diffusion_weight="token")).loss(
            model, graphs, VOCAB, torch.Generator().manual_seed(3))
    by_hand = torch.stack([ce[i][mask[i]].sum() / (max(rate[i, 0].item(), 1 / L) * L) for i in range(n)]).mean()
    assert torch.allclose(elbo, by_hand, atol=1e-5)
    assert torch.allclose(token, ce[mask].mean(), atol=1e-5) and not torch.allclose(elbo, token)


def test_the_cosine_schedule_masks_more_than_the_uniform_one_from_the_same_draws():
    """The schedule maps one uniform draw u to the rate: 1 - u (uniform) or cos(pi u / 2) (cosine, above it for
    every u in (0, 1)): the same generator state gives a superset of masked tokens."""
    obj, model, graphs = setup("diffusion", diffusion_schedule="cosine")
    masked = {}
    for schedule in ("uniform", "cosine"):
        seen = {}

        def spy(x, n_out, causal, seen=seen):
            seen["mask"] = x[:, -n_out:] == VOCAB.dummy
            return model(x, n_out=n_out, causal=causal)

        objective(dataclasses.replace(obj.cfg, diffusion_schedule=schedule)).loss(
            spy, sample(TASK, 512, seeded_generator(1, "s")), VOCAB, torch.Generator().manual_seed(5))
        masked[schedule] = seen["mask"]
    assert (masked["cosine"] | ~masked["uniform"]).all(), "whatever uniform masks, cosine masks too"
    assert masked["cosine"].float().mean() > masked["uniform"].float().mean() + 0.1


def test_hybrid_loss_is_the_mean_over_teacher_forced_sequences_and_teacherless_copies():
    obj, model, graphs = setup("hybrid", hybrid_fraction=0.25)  # 16 graphs: 4 copies
    forced, targets = make_view(graphs, VOCAB, "forward")
    copies = make_view(graphs[:4], VOCAB, "teacherless")[0]
    with torch.no_grad():
        ce = torch.cat([F.cross_entropy(model(x, n_out=L).transpose(1, 2), t, reduction="none")
                        for x, t in ((forced, targets), (copies, targets[:4]))])
        assert torch.allclose(obj.loss(model, graphs, VOCAB), ce.mean(), atol=1e-5)
    assert ce.shape == (20, L)
    # graded and decoded as teacherless: one pass from the prefix with "$" inputs
    teacherless = objective(resolve(RunConfig(mode="teacherless", deg=2, path_len=4, num_nodes=12, layers=2, dim=32,
                                              heads=2)))
    with torch.no_grad():
        for a, b in zip(obj.predict(model, graphs, VOCAB), teacherless.predict(model, graphs, VOCAB)):
            assert torch.equal(a, b)


def test_a_run_starts_from_another_runs_weights(tmp_path):
    from nexttok.graphs import TaskError

    first = tiny_config(path_len=3, steps=4)
    train(first, tmp_path / "g3", progress=False)
    second = Run(tiny_config(path_len=4, init_from=str(tmp_path / "g3")))  # a longer path over the same labels
    weights = torch.load(tmp_path / "g3" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(p, weights[k]) for k, p in second.model.state_dict().items())
    assert second.step == 0 and not second.optimizer.state, "the weights only: a fresh optimiser and schedule"
    # the key names the weights it starts from by their contents
    assert resolve(second.cfg).key() != resolve(tiny_config(path_len=4)).key()
    with pytest.raises(TaskError, match="holds weights of another model"):
        Run(tiny_config(path_len=4, dim=16, init_from=str(tmp_path / "g3")))
    with pytest.raises(TaskError, match="missing.pt: no checkpoint there"):
        Run(tiny_config(path_len=4, init_from=str(tmp_path / "missing.pt")))
    with pytest.raises(TaskError, match="missing.pt: no checkpoint there"):  # its key, as the CLI asks it first
        tiny_config(path_len=4, init_from=str(tmp_path / "missing.pt")).key()


def test_diffusion_decoding_commits_the_surest_position_each_step():
    """A stand-in denoiser that knows the answer but is surest of the last masked position: decoding must
    commit positions right to left, one per step, and return the answer."""
    obj, _, graphs = setup("diffusion")
    answer, order = graphs.path, []

    class RightToLeft(torch.nn.Module):
        def forward(self, x, n_out, causal):
            masked = x[:, -n_out:] == VOCAB.dummy
            order.append(masked[0].nonzero().flatten().tolist())
            logits = torch.nn.functional.one_hot(answer, VOCAB.size).float()
            sureness = torch.arange(1, n_out + 1, dtype=torch.float)[None, :, None]  # later positions surer
            return logits * sureness * 5

    decoded = obj.decode(RightToLeft(), graphs, VOCAB)
    assert torch.equal(decoded, answer)
    assert order == [[0, 1, 2, 3], [0, 1, 2], [0, 1], [0]]


def test_belief_state_pairs_and_targets_by_hand():
    a, c = pairs(4)
    assert list(zip(a.tolist(), c.tolist())) == [(0, 2), (0, 3), (0, 4), (0, 5), (1, 3), (1, 4), (1, 5), (2, 4),
                                                 (2, 5), (3, 5)]  # l(l+1)/2 pairs with c - a >= 2
    obj, model, graphs = setup("bst")
    targets = graphs.path
    back = obj.backward_inputs(targets, VOCAB)
    # the backward encoder reads the end marker, then the target from its end, down to token 2
    assert (back[:, 0] == VOCAB.dummy).all() and torch.equal(back[:, 1:], targets[:, 1:].flip(1))


@torch.no_grad()
def test_belief_state_pair_losses_are_the_loss_pair_by_pair():
    """Each pair asks for token a+1 (next) and token c-1 (prev); the loss is the mean of the pairs' two losses."""
    obj, model, graphs = setup("bst")
    a, c = pairs(L)
    _, (want_next, want_prev) = obj.pair_predictions(model, graphs, VOCAB)
    assert torch.equal(want_next, graphs.path[:, a]) and torch.equal(want_prev, graphs.path[:, c - 2])
    nxt, prev = obj.pair_losses(model, graphs, VOCAB)
    assert nxt.shape == prev.shape == (len(a),) and (nxt > 0).all() and (prev > 0).all()
    assert torch.allclose((nxt.mean() + prev.mean()) / 2, obj.loss(model, graphs, VOCAB), atol=1e-6)


@torch.no_grad()
def test_belief_state_pair_predictions_never_see_their_targets():
    """For every pair (a, c), the forward state has read tokens 1..a and the backward state tokens c..l: the
    next-token prediction (token a+1) and the previous-token prediction (token c-1) lie strictly between."""
    obj, model, graphs = setup("bst")
    a, c = pairs(L)
    (nxt, prev), _ = obj.pair_predictions(model, graphs, VOCAB)
    for j in range(1, L + 1):
        (nxt2, prev2), _ = obj.pair_predictions(model, with_target(graphs, j, other_labels(graphs, j)), VOCAB)
        for k, (ak, ck) in enumerate(zip(a.tolist(), c.tolist())):
            if ak + 1 == j:  # the next-token target of this pair: neither state may have read it
                assert torch.allclose(nxt[:, k], nxt2[:, k], atol=1e-5), (j, ak, ck)
            if ck - 1 == j:
                assert torch.allclose(prev[:, k], prev2[:, k], atol=1e-5), (j, ak, ck)


@torch.no_grad()
@pytest.mark.parametrize("mode", ["mtp", "bst"])
def test_cached_decoding_equals_decoding_by_hand(mode):
    """The objectives with their own network decode through the key/value cache exactly as re-reading the
    whole sequence for every token would (through head 1 for mtp; with the end marker's state for bst)."""
    obj, model, graphs = setup(mode)
    decoded = obj.decode(model, graphs, VOCAB)
    seq = make_view(graphs, VOCAB, "forward")[0][:, :P]
    for _ in range(L):
        logits = model(seq, n_out=1, end_token=VOCAB.dummy) if mode == "bst" else model(seq, n_out=1)
        seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(decoded, seq[:, P:])


@pytest.mark.parametrize("mode", sorted(OBJECTIVES))
def test_the_loss_falls_on_a_tiny_run(mode):
    run = Run(tiny_config(mode=mode, layers=2, dim=32, heads=2, steps=60, warmup=5, lr=3e-3))
    first = [run.train_step().item() for _ in range(5)]
    for _ in range(50):
        run.train_step()
    last = [run.train_step().item() for _ in range(5)]
    assert sum(last) / 5 < 0.92 * sum(first) / 5, (first, last)  # from a uniform guess towards the node labels


@pytest.mark.parametrize("flags,msg", [
    (dict(mode="mtp", mtp_heads=0), "--mtp-heads must be at least 1"),
    (dict(mode="dropout", input_dropout=1.5), r"--input-dropout must be in \[0, 1\]"),
    (dict(mode="forward", mtp_heads=3), "--mtp-heads is for --mode mtp only"),
    (dict(mode="forward", input_dropout=0.2), "--input-dropout is for --mode dropout only"),
    (dict(mode="diffusion", model="mamba"), "--mode diffusion trains the gpt model only"),
    (dict(mode="bst", model="mamba"), "--mode bst trains the gpt model only"),
    (dict(mode="forward", hybrid_fraction=0.5), "--hybrid-fraction is for --mode hybrid only"),
    (dict(mode="hybrid", hybrid_fraction=0.0), r"--hybrid-fraction must be in \(0, 1\]"),
    (dict(mode="forward", diffusion_weight="elbo"), "--diffusion-weight is for --mode diffusion only"),
    (dict(mode="diffusion", diffusion_weight="1/r"), "diffusion_weight must be token or elbo"),
    (dict(mode="forward", diffusion_schedule="cosine"), "--diffusion-schedule is for --mode diffusion only"),
])
def test_bad_flag_combinations_are_refused(flags, msg):
    from nexttok.graphs import TaskError

    with pytest.raises(TaskError, match=msg):
        resolve(RunConfig(**flags))
