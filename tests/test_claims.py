"""Every claim the book asserts is a named function of nexttok.claims with a named tolerance: here each one passes
on numbers that satisfy it and fails, with its message, on numbers that do not (a claim that cannot fail checks
nothing)."""
import math

import pandas as pd
import pytest

from nexttok import claims
from nexttok.config import RunConfig
from nexttok.records import RunRecord


def fails(match, fn, *args, **kwargs):
    with pytest.raises(AssertionError, match=match):
        fn(*args, **kwargs)


def test_forward_at_chance_uses_its_named_tolerance():
    claims.forward_at_chance([0.5, 0.49, 0.5 + claims.AT_CHANCE_TOL - 1e-9], deg=2)
    claims.forward_at_chance(0.34, deg=3)
    fails("at chance, 1/d = 0.50 within 0.15: 0.700", claims.forward_at_chance, [0.5, 0.7], deg=2)
    fails("no run", claims.forward_at_chance, [], deg=2)


def test_first_decision_depends_on_the_path_length():
    claims.first_decision(0.5, 2, 5, "x")
    fails("x is at chance", claims.first_decision, 0.8, 2, 5, "x")
    claims.first_decision(0.8, 2, 3, "x")  # at l = 3 above chance is allowed
    fails("one look-up from the goal", claims.first_decision, 0.99, 2, 3, "x")
    fails("one look-up from the goal", claims.first_decision, 0.2, 2, 3, "x")


def test_arms_and_wrong_paths():
    claims.follows_an_arm(1.0)
    fails("follows some arm", claims.follows_an_arm, 0.9)
    claims.wrong_paths_end(0.0, to_leaf=True)
    fails("ends at its arm's leaf", claims.wrong_paths_end, 0.5, to_leaf=True)
    claims.wrong_paths_end(1.0, to_leaf=False)
    fails("ends at the .*goal", claims.wrong_paths_end, 0.5, to_leaf=False)
    claims.only_right_paths_on_an_arm([0.5, 0.49], [0.5, 0.49])
    fails("only the right paths", claims.only_right_paths_on_an_arm, [1.0], [0.5])


def test_the_cheat():
    claims.later_positions_fit_early(200, 600)
    fails("fit before the last step", claims.later_positions_fit_early, None, 600)
    fails("fit before the last step", claims.later_positions_fit_early, 600, 600)
    claims.lookup_head(outgoing=0.5, incoming=0.01, uniform=0.02)
    fails("uniform", claims.lookup_head, outgoing=0.05, incoming=0.0, uniform=0.02)
    fails("entering v", claims.lookup_head, outgoing=0.5, incoming=0.2, uniform=0.02)
    claims.follows_swapped_arm(0.99)
    fails("whatever arm", claims.follows_swapped_arm, 0.5)


def test_the_indecipherable_token():
    loss, grad = [1e-3, 0.69, 1e-3, 1e-3, 1e-3], [1e-4, 1.0, 1e-4, 1e-4, 1e-4]
    claims.gradient_goes_to_the_arm_choice(loss, grad, [0.2, 0.9])
    fails("every position but the arm choice is fit", claims.gradient_goes_to_the_arm_choice,
          [1e-3, 0.69, 0.5, 1e-3, 1e-3], grad, [0.2, 0.9])
    fails("most of the gradient", claims.gradient_goes_to_the_arm_choice, loss, [1.0, 0.1, 1.0, 1.0, 1.0], [0.2, 0.9])
    fails("share of the gradient grew", claims.gradient_goes_to_the_arm_choice, loss, grad, [0.5, 0.6])
    claims.arm_choice_loss_at_a_guess(math.log(2), math.log(2), 2)
    fails("beside the cheat", claims.arm_choice_loss_at_a_guess, 0.3, math.log(2), 2)
    fails("alone the arm choice", claims.arm_choice_loss_at_a_guess, math.log(2), 0.3, 2)
    claims.alone_as_beside([0.5, 0.51], [0.5, 0.5])
    fails("alone it ends where", claims.alone_as_beside, [0.9], [0.5])
    fails("alone it ends where", claims.alone_as_beside, [], [])
    claims.deciphered_alone_at_l3(0.84, 0.8, 2)
    fails("rises above chance", claims.deciphered_alone_at_l3, 0.55, 0.5, 2)
    fails("at least as far", claims.deciphered_alone_at_l3, 0.7, 0.95, 2)


def test_reverse():
    claims.reverse_jumps(300, 400, 50)
    fails("within 3 evaluations", claims.reverse_jumps, 100, 400, 50)
    fails("first near a guess", claims.reverse_jumps, None, 400, 50)
    claims.reverse_learned([1.0, 0.96])
    fails("learned", claims.reverse_learned, [1.0, 0.5])
    claims.live_agrees(0.5, 0.52)
    fails("agrees", claims.live_agrees, 0.5, 0.6)


def test_grid():
    rows = pd.DataFrame({"deg": [2, 2, 2, 3], "path_len": [5, 5, 3, 3], "seed": [0, 1, 0, 0],
                         "gen_accuracy": [0.5, 0.1, 0.8, 0.6], "fit": [True, False, True, True]})
    claims.grid_forward(rows)  # the unfit run at 0.1 says nothing about the claim
    fails("sit at 1/d; not G\\(2,5\\) seed 1", claims.grid_forward, rows.assign(fit=True))
    fails("at degree \\[3\\]", claims.grid_forward, rows.assign(gen_accuracy=[0.5, 0.5, 0.8, 0.4]))
    fails("never solves", claims.grid_forward, rows.assign(gen_accuracy=[0.5, 0.5, 0.99, 0.6]))

    def run(acc, seed):
        return RunRecord(RunConfig(deg=2, path_len=4, mode="reverse", seed=seed), {"gen_accuracy": acc})
    claims.grid_reverse([run(1.0, 0), run(1.0, 1), run(0.5, 2)])
    fails("not in G\\(2,4\\)", claims.grid_reverse, [run(1.0, 0), run(0.5, 1), run(0.5, 2)])
