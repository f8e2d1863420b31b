"""The recipe: settings a run leaves unset come from its shape, model and objective; a value set wins."""
import dataclasses

import pytest

from nexttok import RunConfig
from nexttok.config import RECIPE_FIELDS, TaskError
from nexttok.recipe import RULES, known_short, recipe, under_trained_fix
from nexttok.resolve import resolve
from nexttok.sweep import NAMED, load_sweep


def test_unset_fields_are_the_recipes_and_set_ones_win():
    cfg = RunConfig()
    assert cfg.lr is None and resolve(cfg).lr == recipe(cfg)["lr"]
    assert resolve(RunConfig(lr=1e-4)).lr == 1e-4
    assert set(resolve(RunConfig()).to_dict()) >= {"lr", "steps", "warmup", "layers", "dim", "heads", "positions", "batch_size"}
    # a value set to what the recipe would give is the same run
    assert resolve(RunConfig(lr=recipe(cfg)["lr"])).key() == resolve(cfg).key()


def test_later_narrower_rows_win():
    two, three = resolve(RunConfig(deg=2)), resolve(RunConfig(deg=3))
    # dataclasses.replace of an unresolved config re-derives what was left unset
    assert resolve(dataclasses.replace(RunConfig(deg=2), deg=3)).lr == three.lr
    # the l = 3 rows override their degree's steps, only over more than 20 labels and only at degrees 2 and 3
    assert resolve(RunConfig(deg=2, path_len=3, num_nodes=50)).steps > two.steps
    assert resolve(RunConfig(deg=2, path_len=3, num_nodes=20)).steps == two.steps
    assert resolve(RunConfig(deg=3, path_len=3, num_nodes=50)).steps > three.steps
    assert resolve(RunConfig(deg=4, path_len=3, num_nodes=50)).steps == resolve(RunConfig(deg=4, path_len=3)).steps
    # Mamba's row comes after the degree rows: its lr and steps win over them at every degree
    for deg in (2, 3, 4):
        mamba = resolve(RunConfig(model="mamba", deg=deg, path_len=5, num_nodes=25))
        assert (mamba.lr, mamba.steps) == (recipe(RunConfig(model="mamba"))["lr"], recipe(RunConfig(model="mamba"))["steps"])
        assert mamba.heads is None and mamba.positions is None
    assert resolve(RunConfig(model="gpt2")).layers is None, "a pretrained model brings its own size"


def test_masked_diffusion_takes_a_fixed_set_where_the_task_holds_one():
    assert resolve(RunConfig(mode="diffusion")).n_train == 50_000
    assert resolve(RunConfig()).n_train == 0, "every other objective draws fresh graphs"
    # G(2,3) over 10 labels holds 30,240 graphs, fewer than the set and the test graphs: fresh graphs, no error
    assert resolve(RunConfig(mode="diffusion", path_len=3, num_nodes=10)).n_train == 0
    with pytest.raises(TaskError, match="distinct graphs"):  # a set the user asks for is checked, not replaced
        resolve(RunConfig(mode="diffusion", path_len=3, num_nodes=10, n_train=50_000))
    assert resolve(RunConfig(mode="diffusion", n_train=0)).n_train == 0, "a value set wins"


def test_masked_diffusion_masks_at_the_cosine_rate_where_it_was_measured():
    assert resolve(RunConfig(mode="diffusion")).diffusion_schedule == "cosine"
    assert resolve(RunConfig(mode="diffusion", path_len=3, num_nodes=10)).diffusion_schedule == "cosine", \
        "a task too small for the fixed set keeps the rate"
    assert resolve(RunConfig(mode="diffusion", deg=3)).diffusion_schedule == "uniform", "measured at degree 2 only"
    assert resolve(RunConfig(mode="diffusion", diffusion_schedule="uniform")).diffusion_schedule == "uniform"


def test_the_belief_state_transformer_gets_depth_and_steps_on_fresh_graphs_where_it_was_measured():
    bst, forward = resolve(RunConfig(mode="bst")), resolve(RunConfig())
    assert (bst.layers, bst.steps, bst.n_train) == (4, 6_000, 0) and (forward.layers, forward.steps) == (2, 600)
    assert resolve(RunConfig(mode="bst", deg=3)).layers == 2, "measured at degree 2 only"
    assert resolve(RunConfig(mode="bst", layers=2, steps=600)).steps == 600, "a value set wins"


def test_every_setting_is_a_recipe_field_and_every_row_applies_somewhere():
    configs = [c for name in NAMED for c in load_sweep(name)] + [
        RunConfig(mode=m, deg=d, path_len=l, num_nodes=n, only_position=p, model=model)
        for m in ("forward", "mtp", "dropout", "hybrid", "diffusion", "bst") for d in (2, 3) for l in (3, 5)
        for n in (20, 50) for p in (0, 2) for model in ("gpt", "mamba") if not (model == "mamba" and m != "forward")]
    for applies, settings in RULES:
        assert set(settings) <= set(RECIPE_FIELDS)
        assert any(applies(c) for c in configs), f"a row that applies to no config: {settings}"


def test_objective_settings_exist_only_for_their_objective():
    for mode, field in (("mtp", "mtp_heads"), ("dropout", "input_dropout"), ("hybrid", "hybrid_fraction")):
        assert getattr(resolve(RunConfig(mode=mode)), field) is not None
        assert getattr(resolve(RunConfig(mode="forward")), field) is None


@pytest.mark.parametrize("deg", [2, 3, 4])
def test_known_short_and_the_fix_name_what_to_change_without_quoting_runs(deg):
    fix = under_trained_fix(deg)
    assert "seed " not in fix.replace("another seed", "") and "step " not in fix
    alone = RunConfig(deg=deg, path_len=6, num_nodes=25, only_position=2)
    assert (known_short(alone) is None) == (deg == 2)
    assert known_short(dataclasses.replace(alone, steps=100)) is None  # steps set: the user's to try
