"""The FLOP count behind `nexttok bench`'s utilisation figures."""
import pytest

from nexttok.bench import train_flops_per_sample
from nexttok.tokens import prefix_len
from nexttok.train import Run

from conftest import tiny_config


def test_gpt_flops_per_sample_match_the_formula():
    """A GPT training sample, counted: per layer and token 24 C^2 for the matrices (qkv, projection, 4x MLP),
    4 T C per query for attention scores and values; the last block computes only the l graded positions
    (keys and values for all T), and so does the tied head; backward is twice forward."""
    cfg = tiny_config(layers=2, dim=32, heads=2, batch_size=4)
    run = Run(cfg)
    C, L, l, V = cfg.dim, cfg.layers, cfg.path_len, run.vocab.size
    T = prefix_len(run.task.num_edges) + l - 1
    full = 24 * C * C * T + 4 * T * T * C
    last = 4 * C * C * T + 20 * C * C * l + 4 * l * T * C
    assert train_flops_per_sample(run) == 3 * ((L - 1) * full + last + 2 * C * V * l)


@pytest.mark.parametrize("mode,low,high", [("mtp", 1.2, 2.0), ("bst", 1.2, 3.0), ("diffusion", 1.0, 1.1)])
def test_objectives_are_counted_by_what_they_compute(mode, low, high):
    """Against next-token training of the same GPT: an extra head block (mtp) and a second encoder with a pair
    head (bst) cost more per sample; diffusion grades the same l positions over one more token."""
    forward = train_flops_per_sample(Run(tiny_config(layers=2, dim=32, heads=2)))
    assert low * forward < train_flops_per_sample(Run(tiny_config(layers=2, dim=32, heads=2, mode=mode))) < high * forward
