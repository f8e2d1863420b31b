"""The chapters' helpers (nexttok.chapter): parameters to a config, committed results, preconditions."""
import dataclasses

import pytest

from nexttok.chapter import (Precondition, assert_first_decision, cell_label, cells_not_learned, committed, committed_run,
                             cpu_seconds, describe, from_parameters, require_budget, require_fit, require_learned,
                             results_path, unfit_positions)
from nexttok.config import RunConfig
from nexttok.records import RunRecord
from nexttok.recipe import PAPER_SCALE, under_trained_fix
from nexttok.resolve import resolve

from conftest import tiny_config


def record(metrics: dict, **config) -> RunRecord:
    return RunRecord(resolve(RunConfig(**config)), metrics)


def test_parameters_given_by_name_to_config():
    cfg = from_parameters(deg=3, path_len=4, lr=None, seed=2, mode="reverse")
    assert (cfg.deg, cfg.path_len, cfg.seed, cfg.mode) == (3, 4, 2, "reverse")
    assert cfg.lr is None and resolve(cfg).lr == resolve(RunConfig(deg=3, path_len=4)).lr  # the recipe's
    with pytest.raises(Precondition, match="unexpected keyword argument 'recompute'.*RunConfig fields"):
        from_parameters(deg=3, recompute=False)


def test_committed_rows_of_these_configs(tmp_path, monkeypatch):
    from nexttok import chapter
    from nexttok.records import write_table

    monkeypatch.setattr(chapter, "RESULTS", tmp_path)
    cfg = tiny_config()
    row = lambda c, acc: {"key": resolve(c).key(), **resolve(c).to_dict(), "gen_accuracy": acc, "tf_token_accuracy_1": 1.0,  # noqa: E731
                          "tf_token_accuracy_2": acc, "commit": "abc", "device": "cpu (x86_64, 1 threads)"}
    rows = [row(dataclasses.replace(cfg, seed=s), s / 10) for s in (0, 3)]
    rows.append(row(dataclasses.replace(cfg, seed=1, lr=1e-4), 0.9))  # another config
    write_table(rows, tmp_path / "results.csv")
    wanted = [dataclasses.replace(cfg, seed=s) for s in (0, 1, 3)]
    found = committed("results.csv", wanted, required=False)
    assert [r.config.seed for r in found] == [0, 3] and found[1].metrics["gen_accuracy"] == 0.3
    assert found[1].metrics["tf_token_accuracy"] == [1.0, 0.3] and found[1].provenance["commit"] == "abc"
    assert found[1].provenance["device"].startswith("cpu (") and found[1].config.device == "auto"  # not the machine: how a run computes is not in its row
    with pytest.raises(Precondition, match="has no row for 1 of 3 configs"):
        committed("results.csv", wanted)
    with pytest.raises(Precondition, match="no committed run"):
        committed_run(cfg, "nowhere")


def test_committed_results_ship_with_the_package():
    assert results_path("README.md").is_file()
    import tomllib
    from pathlib import Path
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "results/**/*" in project["tool"]["setuptools"]["package-data"]["nexttok"]


def test_preconditions_name_the_fix():
    metrics = {"tf_token_accuracy": [1.0, 0.3, 0.5, 1.0, 1.0, 1.0], "gen_accuracy": 0.25}
    run = record(metrics, steps=3000, deg=4, path_len=6, num_nodes=25, seed=1)
    with pytest.raises(Precondition, match=r"positions \[3\] are not fit after 3000 steps.*under-trained for forward "
                                           r"G\(4,6\) with N=25, seed 1: some seeds sit on a plateau.*another seed"):
        require_fit(run)
    require_fit(run, range(4, 7))
    # the fix follows the measurements: at degree 3 more steps at the recipe's lr do not leave a plateau, another lr does
    reverse = record({**metrics, "gen_accuracy": 0.936}, mode="reverse", deg=3, path_len=6, steps=1200)
    with pytest.raises(Precondition, match=r"reverse run has not learned after 1200 steps \(gen_accuracy 0.94 < 0.95\).*"
                                           r"reverse G\(3,6\).*set lr 2e-3 and steps 3000"):
        require_learned(reverse)
    require_learned(reverse, level=0.9)
    for model in ("gpt", "mamba"):
        assert "raise steps" in under_trained_fix(2, model)
    assert "lr" in under_trained_fix(3) and "raise steps" in under_trained_fix(3, "mamba")
    with pytest.raises(Precondition, match="minutes on a 2-core CPU"):
        require_budget([RunConfig(layers=6, dim=384, heads=6, steps=20_000, device="cpu")])
    assert require_budget([RunConfig(device="cpu")]) < 5 * 60  # the default run fits easily
    # a run the recipe is measured not to train far enough is refused before it trains, unless steps are set
    alone = RunConfig(deg=4, path_len=5, only_position=2)
    with pytest.raises(Precondition, match=r"degree 4 a run on one position alone is not learned.*set steps"):
        require_budget([RunConfig(deg=4, path_len=5), alone])
    require_budget([dataclasses.replace(alone, steps=100)])
    with pytest.raises(Precondition, match=r"degree 3 from l = 6 on a run on one position alone ends below"):
        require_budget([RunConfig(deg=3, path_len=6, only_position=2)])
    require_budget([RunConfig(deg=3, path_len=5, only_position=2)])  # measured to reach the guess among 3 children
    require_budget([dataclasses.replace(alone, deg=3)])


def test_the_cpu_estimate_prices_what_an_objective_adds_to_a_step():
    base = RunConfig(layers=3, steps=100, device="cpu")
    forward = cpu_seconds(base)
    assert cpu_seconds(dataclasses.replace(base, mode="reverse")) == pytest.approx(forward)  # the same model and tokens
    hybrid = dataclasses.replace(base, mode="hybrid", hybrid_fraction=0.5)
    assert cpu_seconds(hybrid) == pytest.approx(1.5 * forward, rel=0.02)  # half the graphs again, as teacherless copies
    # a second encoder over the target and a head over every (prefix, suffix) pair
    assert 1.3 < cpu_seconds(dataclasses.replace(base, mode="bst")) / forward < 1.7
    assert cpu_seconds(dataclasses.replace(base, layers=6)) == pytest.approx(2 * forward)


def test_scale_paper_moves_a_chapter_to_the_papers_model_and_data_in_one_line():
    cfg = resolve(from_parameters(deg=2, path_len=5, num_nodes=20, seed=1, scale="paper", mode="reverse"))
    assert {k: getattr(cfg, k) for k in PAPER_SCALE} == PAPER_SCALE
    assert (cfg.mode, cfg.seed, cfg.deg) == ("reverse", 1, 2)  # the task, seed and mode stay the chapter's
    assert from_parameters(num_nodes=20, scale="cpu").num_nodes == 20
    with pytest.raises(Precondition, match="scale must be"):
        from_parameters(scale="huge")
    with pytest.raises(Precondition, match="on a 2-core CPU"):  # on a CPU it is refused before it trains
        require_budget([dataclasses.replace(cfg, device="cpu")])


def test_describe_names_the_scale_and_the_metrics_of_a_run():
    metrics = {"gen_accuracy": 0.5, "first_decision_accuracy": 0.5, "on_some_arm": 1.0, "tf_loss": 0.1,
               "train_seconds": 3.0, "tf_token_accuracy": [1.0, 0.5, 1.0], "gen_token_accuracy": [1.0, 0.5, 0.5]}
    text = describe(record(metrics, path_len=3))
    assert text.splitlines()[0].startswith("G(2,3), N=20; gpt 2x96")
    assert "'gen_accuracy': 0.5" in text and "by position: [1.0, 0.5, 1.0]" in text


def test_results_path_reads_a_folder_laid_out_like_the_committed_results(tmp_path):
    assert results_path("grid.csv") == results_path() / "grid.csv"
    assert results_path("grid.csv", root=tmp_path) == tmp_path / "grid.csv"
    assert results_path("mamba", root=None) == results_path("mamba")
    with pytest.raises(Precondition, match="is not a folder"):
        results_path("grid.csv", root=tmp_path / "missing")


def test_the_first_decision_claim_follows_the_path_length():
    # from l = 4 on: at 1/d within 0.15, on either side
    assert_first_decision(0.5, 2, 5, "x")
    assert_first_decision(0.40, 3, 4, "x")
    for acc in (0.66, 0.30):
        with pytest.raises(AssertionError, match="x is at chance, 1/d = 0.50"):
            assert_first_decision(acc, 2, 4, "x")
    # at l = 3 (one look-up from the goal, learned on some seeds): from 1/d - 0.15 up to, not including, 0.95
    for acc, deg in ((0.84, 2), (0.36, 2), (0.36, 3), (0.62, 3)):
        assert_first_decision(acc, deg, 3, "x")
    for acc, deg in ((0.34, 2), (0.97, 2), (0.17, 3), (0.95, 3)):
        with pytest.raises(AssertionError, match="one look-up from the goal.*x is between chance"):
            assert_first_decision(acc, deg, 3, "x")


def test_cell_label_names_shape_model_lr_and_budget_not_the_seed():
    assert cell_label(2, 4, 6, 96, 1e-3, 3000) == "G(2,4), 6x96, lr 0.001, 3000 steps"
    assert cell_label(2, 4, 2, 192, 3e-3, 3000) != cell_label(2, 4, 2, 96, 3e-3, 3000)


def test_a_cell_is_learned_when_more_than_half_its_seeds_are():
    row = lambda d, l, acc: record({"gen_accuracy": acc}, deg=d, path_len=l, num_nodes=25)  # noqa: E731
    rows = [row(2, 5, 1.0), row(2, 5, 0.99), row(2, 5, 0.2),  # 2 of 3
            row(4, 3, 0.25), row(4, 3, 0.96), row(4, 3, 0.94),  # 1 of 3
            row(3, 6, 0.95), row(3, 6, 0.5)]  # 1 of 2 is not most
    assert cells_not_learned(rows) == [(3, 6), (4, 3)]
    assert cells_not_learned(rows, level=0.9) == [(3, 6)]
    assert cells_not_learned([]) == []


def test_unfit_positions_are_those_from_3_to_l_of_the_runs_own_path_length_below_the_level():
    acc = [1.0, 0.5, 0.99, 0.96, 0.95]
    assert unfit_positions(record({"tf_token_accuracy": acc}, path_len=5)) == []  # positions 1 and 2 do not count
    assert unfit_positions(record({"tf_token_accuracy": [*acc[:3], 0.949, 0.95]}, path_len=5)) == [4]
    assert unfit_positions(record({"tf_token_accuracy": acc}, path_len=5), [2, 3]) == [2]
    assert unfit_positions(record({"tf_token_accuracy": [*acc[:3], 0.9, 0.95]}, path_len=5), level=0.9) == []
    grid = committed("grid.csv", [])  # read through the same reader as every chapter
    assert grid == []


def test_provenance_is_one_row_per_run_and_describe_prints_no_seconds():
    from nexttok.chapter import provenance
    metrics = {"gen_accuracy": 0.5, "first_decision_accuracy": 0.5, "on_some_arm": 1.0, "tf_loss": 0.1,
               "train_seconds": 3.0, "tf_token_accuracy": [1.0, 0.5, 1.0], "gen_token_accuracy": [1.0, 0.5, 0.5]}
    run = record(metrics, path_len=3)
    run.provenance = {"commit": "abc", "device": "cpu (x86_64, 1 threads)", "wall_seconds": 3.5}
    table = provenance([run, run])
    assert len(table) == 2 and table["commit"].tolist() == ["abc", "abc"] and table["wall seconds"][0] == 3.5
    assert "train_seconds" not in describe(run), "provenance stays out of the argument"


def test_one_colour_per_position_and_per_objective():
    from nexttok.plots import MODE_COLOURS, mode_colour, position_colour
    assert len({position_colour(i) for i in range(1, 7)}) == 6
    assert position_colour(2) == position_colour(2) and mode_colour("forward seed 0") == MODE_COLOURS["forward"]
    assert mode_colour("reverse") != mode_colour("forward") and mode_colour("gpt2, forward") is None
