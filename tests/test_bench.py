"""The FLOP count behind `nexttok bench`'s utilisation figures, against PyTorch's own FLOP counter."""
from torch.utils.flop_counter import FlopCounterMode

from nexttok.bench import train_flops_per_sample
from nexttok.objectives import make_view, target_loss
from nexttok.tokens import prefix_len
from nexttok.train import Run

from conftest import tiny_config


def test_gpt_flops_per_sample_match_the_counted_matmuls():
    """PyTorch counts every matmul of a training step (forward and backward); it does not count the CPU's
    fused attention kernel, so the formula's attention term is added to its count: the two must agree."""
    cfg = tiny_config(layers=2, dim=32, heads=2, batch_size=4)
    run = Run(cfg)
    inputs, targets = make_view(run.train_data.batch(0), run.vocab, cfg.mode)
    with FlopCounterMode(display=False) as counter:
        target_loss(run.model(inputs, n_out=targets.shape[1]), targets).backward()
    C, l = cfg.dim, cfg.path_len
    T = prefix_len(run.task.num_edges) + l - 1
    attention = 3 * ((cfg.layers - 1) * 4 * T * T * C + 4 * l * T * C)  # forward + backward, the last block's l queries
    assert counter.get_total_flops() / cfg.batch_size + attention == train_flops_per_sample(run.model, cfg, run.task)
