"""The recipe: settings a run leaves unset come from its shape, model and objective; a value set wins."""
import dataclasses

from nexttok import RunConfig
from nexttok.recipe import RECIPE_FIELDS, recipe


def test_unset_fields_are_the_recipes_and_set_ones_win():
    cfg = RunConfig()
    assert cfg.lr is None and cfg.resolved().lr == recipe(cfg)["lr"]
    assert RunConfig(lr=1e-4).resolved().lr == 1e-4
    assert set(RunConfig().to_dict()) >= {"lr", "steps", "warmup", "layers", "dim", "heads", "positions", "batch_size"}
    # a value set to what the recipe would give is the same run
    assert RunConfig(lr=recipe(cfg)["lr"]).key() == cfg.key()


def test_the_recipe_follows_the_shape_and_the_model():
    two, three = RunConfig(deg=2).resolved(), RunConfig(deg=3).resolved()
    assert three.lr < two.lr, "degree 3 sits on a plateau at degree 2's learning rate"
    # dataclasses.replace re-derives what was left unset: a copy for another shape gets that shape's recipe
    assert dataclasses.replace(RunConfig(deg=2), deg=3).resolved().lr == three.lr
    # G(2,3) over 50 labels is short at degree 2's 600 steps (the rule's measurements are in nexttok.recipe)
    assert RunConfig(deg=2, path_len=3, num_nodes=50).resolved().steps == 2 * two.steps
    assert RunConfig(deg=2, path_len=3, num_nodes=20).resolved().steps == two.steps
    assert RunConfig(deg=2, path_len=4, num_nodes=50).resolved().steps == two.steps
    assert RunConfig(deg=3, path_len=3, num_nodes=50).resolved().steps == 2 * three.steps  # and G(3,3) too
    # but not G(4,3): there twice the steps did not take a seed off its plateau
    assert RunConfig(deg=4, path_len=3, num_nodes=50).resolved().steps == RunConfig(deg=4, path_len=3).resolved().steps
    mamba = RunConfig(model="mamba").resolved()
    assert mamba.lr > two.lr and mamba.dim < two.dim and mamba.heads is None and mamba.positions is None
    assert RunConfig(model="gpt2").resolved().layers is None, "a pretrained model brings its own size"


def test_objective_settings_exist_only_for_their_objective():
    assert RunConfig(mode="mtp").resolved().mtp_heads == recipe(RunConfig(mode="mtp"))["mtp_heads"]
    assert RunConfig(mode="forward").resolved().mtp_heads is None
    assert RunConfig(mode="dropout").resolved().input_dropout is not None
    assert set(recipe(RunConfig())) <= set(RECIPE_FIELDS)
