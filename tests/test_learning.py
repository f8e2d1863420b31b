"""What learning cost a run, and the order of its positions, read off a history built by hand."""
from nexttok import RunConfig, resolve
from nexttok.learning import cost_to_learn, learned_at, levers, right_to_left
from nexttok.records import History, RunRecord


def run_with(rows, **config) -> RunRecord:
    return RunRecord(resolve(RunConfig(**config)), {}, history=History.from_rows(rows))


def row(step, gen, *positions):
    return {"step": step, "gen_accuracy": gen, **{f"tf_token_accuracy_{i}": a for i, a in enumerate(positions, 1)}}


def test_cost_counts_samples_flops_and_seconds_to_the_first_evaluation_at_the_level():
    run = run_with([row(100, 0.1, 1, 0.5, 0.2, 1), row(200, 0.96, 1, 1, 1, 1), row(300, 0.9, 1, 1, 1, 1)],
                   path_len=4, batch_size=128)
    assert cost_to_learn(run, flops_per_sample=2.0, step_ms=50) == {"steps": 200, "samples": 25_600,
                                                                   "flops": 51_200.0, "seconds": 10.0}
    assert cost_to_learn(run, level=0.99) == {"steps": None, "samples": None, "flops": None, "seconds": None}
    assert cost_to_learn(run)["flops"] is None  # no FLOPs per sample given


def test_positions_learned_from_the_goal_back_and_the_order_refuted():
    goal_first = run_with([row(100, 0, 1, 0.5, 0.2, 0.96, 1), row(200, 0, 1, 0.5, 0.97, 1, 1), row(300, 1, 1, 1, 1, 1, 1)],
                          path_len=5)
    assert learned_at(goal_first) == {1: 100, 2: 300, 3: 200, 4: 100, 5: 100}
    assert right_to_left(goal_first) is True
    arm_first = run_with([row(100, 0, 1, 0.99, 0.2, 0.2, 1), row(200, 0, 1, 1, 0.2, 0.99, 1)], path_len=5)
    assert right_to_left(arm_first) is False  # the arm choice first, position 3 never
    together = run_with([row(100, 0, 1, 0.2, 0.2, 0.2, 1), row(200, 1, 1, 1, 1, 1, 1)], path_len=5)
    assert right_to_left(together) is True  # learned at the same evaluation: not out of order
    one = run_with([row(100, 0, 1, 0.5, 0.2, 0.99, 1)], path_len=5)
    assert right_to_left(one) is None  # one hidden position learned: nothing to order


def test_levers_name_the_settings_a_run_moved_and_skip_bookkeeping():
    reference = resolve(RunConfig(mode="diffusion", seed=0))
    assert levers(reference, reference) == {}
    assert levers(resolve(RunConfig(mode="diffusion", seed=0, eval_every=250)), reference) == {}
    moved = resolve(RunConfig(mode="diffusion", seed=0, diffusion_schedule="uniform", batch_size=512, eval_every=250))
    assert levers(moved, reference) == {"diffusion_schedule": "uniform", "batch_size": 512}
    # a run read back from its config.json holds the omitted defaults of fields its objective does not read
    bst = resolve(RunConfig(mode="bst", seed=0))
    stored = RunConfig.from_dict(resolve(RunConfig(mode="bst", seed=0, layers=5)).to_dict(), stored=True)
    assert stored.diffusion_weight == "token" and bst.diffusion_weight is None
    assert levers(stored, bst) == {"layers": 5}
