"""The book's claims, one named function each, with named tolerances.

A chapter cell reads `claims.forward_at_chance(accuracies, deg)`: the claim has a name, the tolerance has a name,
and a claim that stops holding raises AssertionError with a message that says which claim, on what, and by how
much. Each function takes plain numbers (or a table) that the chapter measured, so a test can hand it numbers
that must fail. The preconditions (is the run trained far enough for the claim to be about it?) stay in
`nexttok.chapter` (`require_fit`, `require_learned`): they raise `Precondition`, not AssertionError."""
from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from .chapter import cells_not_learned
from .evaluate import LEARNED
from .records import RunRecord

# At chance: an accuracy within this of 1/d, the accuracy of picking one of the source's d arms at random.
AT_CHANCE_TOL = 0.15
# Above chance: at l = 3 the arm choice rises at least this far above 1/d on some seed.
ABOVE_CHANCE_MARGIN = 0.15
# A model follows an arm when at least this fraction of its generated paths runs along one arm.
FOLLOWS_ARM_MIN = 0.95
# Where wrong paths end: all but this fraction end at the same place (the arm's leaf, or the goal).
WRONG_END_TOL = 0.05
# With learned positions, only the right paths lie on an arm: on_some_arm equals gen_accuracy within this.
ON_ARM_TOL = 0.01
# The look-up head weighs its place relative to the edge leaving v at least this many times uniform attention,
# and at least this many times the same place relative to the edge entering v.
LOOKUP_OVER_UNIFORM = 5.0
LOOKUP_OVER_INCOMING = 5.0
# Handed the first node of a wrong arm, the model continues that arm at least this often.
FOLLOWS_SWAPPED_ARM_MIN = 0.9
# A position is fit when its teacher-forced loss is below this (nats).
FIT_LOSS_MAX = 0.05
# Position 2's share of the summed gradient norms grows by at least this as the cheat fits.
GRADIENT_SHARE_GROWTH = 0.3
# The arm choice's loss stays at ln d (a guess among the d arms) or above, within this (nats); alone, at this
# fraction of ln d or above.
GUESS_LOSS_TOL = 0.15
ALONE_GUESS_LOSS_FRACTION = 0.9
# Trained alone, position 2 ends where it ends beside the cheat, within this.
ALONE_AS_BESIDE_TOL = 0.1
# Reversed, generation jumps from a guess to past halfway within this many evaluations.
JUMP_EVALUATIONS = 3
# A committed run and the same config trained live agree within this (float rounding differs with threads).
LIVE_AGREES_TOL = 0.05


def _values(accuracies) -> list[float]:
    if isinstance(accuracies, (int, float)):
        return [float(accuracies)]
    return [float(a) for a in accuracies]


def forward_at_chance(accuracies, deg: int, what: str = "forward generation") -> None:
    """Every accuracy is at chance: within AT_CHANCE_TOL of 1/d."""
    chance = 1 / deg
    values = _values(accuracies)
    assert values, f"{what}: no run to check"
    off = [a for a in values if abs(a - chance) > AT_CHANCE_TOL]
    assert not off, (f"{what} is at chance, 1/d = {chance:.2f} within {AT_CHANCE_TOL}: "
                     f"{', '.join(f'{a:.3f}' for a in off)} is not")


def first_decision(accuracy: float, deg: int, path_len: int, what: str) -> None:
    """The arm choice (target position 2), which depends on the path length. From l = 4 on it sits at chance:
    it is l - 2 >= 2 parent look-ups back from the goal, and teacher forcing does not find them. At l = 3 it is
    the goal's own parent, one look-up from the query, which teacher forcing learns on some seeds but not all
    the way: there a run is not below chance (1/d - AT_CHANCE_TOL or more) and has not solved it (< LEARNED)."""
    chance = 1 / deg
    if path_len >= 4:
        forward_at_chance(accuracy, deg, what)
    else:
        assert chance - AT_CHANCE_TOL <= accuracy < LEARNED, (
            f"at l = 3 the arm choice is one look-up from the goal, which teacher forcing learns on some seeds but "
            f"not all the way: {what} is between chance, 1/d = {chance:.2f}, and {LEARNED} (got {accuracy:.3f})")


def follows_an_arm(fraction: float) -> None:
    """The generated paths run along some arm of the graph for their first l - 1 nodes."""
    assert fraction >= FOLLOWS_ARM_MIN, (f"the model follows some arm: {fraction:.3f} of its paths do, fewer than "
                                         f"FOLLOWS_ARM_MIN = {FOLLOWS_ARM_MIN}")


def wrong_paths_end(ends_at_goal: float, to_leaf: bool) -> None:
    """Where a wrong path ends: at the leaf of the arm it followed (rotary positions, l >= 4), or at the goal,
    copied from the query (learned positions, or l = 3)."""
    if to_leaf:
        assert ends_at_goal <= WRONG_END_TOL, (f"with rotary positions a wrong path ends at its arm's leaf, but "
                                               f"{ends_at_goal:.3f} of them end at the goal")
    else:
        assert ends_at_goal >= 1 - WRONG_END_TOL, (f"with learned positions (or at l = 3) a wrong path ends at the "
                                                   f"goal, but only {ends_at_goal:.3f} of them do")


def only_right_paths_on_an_arm(on_some_arm, gen_accuracy) -> None:
    """A wrong path that ends at the goal lies on no arm: on_some_arm equals gen_accuracy."""
    pairs = list(zip(_values(on_some_arm), _values(gen_accuracy)))
    off = [(o, g) for o, g in pairs if abs(o - g) > ON_ARM_TOL]
    assert not off, ("only the right paths lie on an arm (on_some_arm = gen_accuracy within "
                     f"{ON_ARM_TOL}): " + ", ".join(f"{o:.3f} vs {g:.3f}" for o, g in off))


def later_positions_fit_early(fit_at: int | None, last_step: int) -> None:
    """The positions after the arm choice reach LEARNED before training ends."""
    assert fit_at is not None and fit_at < last_step, (
        f"the positions after the first decision are fit before the last step ({last_step}): first at {fit_at}")


def lookup_head(outgoing: float, incoming: float, uniform: float) -> None:
    """Some head weighs one place relative to the edge leaving v many times uniform attention, and that place
    relative to the edge entering v many times less."""
    assert outgoing >= LOOKUP_OVER_UNIFORM * uniform, (
        f"the look-up head weighs the edge leaving v at {outgoing / uniform:.1f}x uniform, under "
        f"LOOKUP_OVER_UNIFORM = {LOOKUP_OVER_UNIFORM}")
    assert outgoing >= LOOKUP_OVER_INCOMING * incoming, (
        f"the look-up head weighs the edge leaving v only {outgoing / max(incoming, 1e-12):.1f}x the edge entering "
        f"v, under LOOKUP_OVER_INCOMING = {LOOKUP_OVER_INCOMING}")


def follows_swapped_arm(fraction: float) -> None:
    """Handed the first node of a wrong arm at position 2, the model continues that arm."""
    assert fraction >= FOLLOWS_SWAPPED_ARM_MIN, (
        f"the model follows whatever arm it is handed: it did {fraction:.3f} of the time, under "
        f"FOLLOWS_SWAPPED_ARM_MIN = {FOLLOWS_SWAPPED_ARM_MIN}")


def gradient_goes_to_the_arm_choice(loss: list[float], grad: list[float], shares: Iterable[float]) -> None:
    """Every position but the arm choice (index 1) is fit; by the end most of the gradient comes from the arm
    choice, and its share grew as the cheat fit."""
    others = [i for i in range(len(loss)) if i != 1]
    worst = max(loss[i] for i in others)
    assert worst < FIT_LOSS_MAX, f"every position but the arm choice is fit: the worst is at loss {worst:.3f}"
    assert grad[1] > sum(grad[i] for i in others), (
        f"by the end most of the gradient comes from the arm choice: {grad[1]:.2e} against "
        f"{sum(grad[i] for i in others):.2e} from the others together")
    shares = list(shares)
    assert shares[-1] > shares[0] + GRADIENT_SHARE_GROWTH, (
        f"the arm choice's share of the gradient grew by more than {GRADIENT_SHARE_GROWTH} as the cheat fit: "
        f"{shares[0]:.2f} -> {shares[-1]:.2f}")


def arm_choice_loss_at_a_guess(full_loss: float, alone_loss: float, deg: int) -> None:
    """The arm choice's loss stays at that of a guess among d arms (ln d), beside the cheat and alone."""
    guess = math.log(deg)
    assert full_loss >= guess - GUESS_LOSS_TOL, (
        f"beside the cheat the arm choice's loss {full_loss:.3f} fell below ln d = {guess:.3f} - {GUESS_LOSS_TOL}")
    assert alone_loss >= ALONE_GUESS_LOSS_FRACTION * guess, (
        f"alone the arm choice's loss {alone_loss:.3f} fell below {ALONE_GUESS_LOSS_FRACTION} ln d")


def alone_as_beside(alone, beside, what: str = "position 2") -> None:
    """Trained alone, position 2 ends where it ends beside the cheat (each pair, within ALONE_AS_BESIDE_TOL)."""
    pairs = list(zip(_values(alone), _values(beside)))
    off = [(a, b) for a, b in pairs if abs(a - b) > ALONE_AS_BESIDE_TOL]
    assert pairs and not off, (f"{what}: alone it ends where it ends beside the cheat, within "
                               f"{ALONE_AS_BESIDE_TOL}: " + ", ".join(f"{a:.3f} vs {b:.3f}" for a, b in off))


def deciphered_alone_at_l3(alone: float, beside: float, deg: int) -> None:
    """At l = 3, trained alone, the arm choice (the goal's parent) rises above chance, at least as far as
    beside the cheat."""
    chance = 1 / deg
    assert alone >= chance + ABOVE_CHANCE_MARGIN, (
        f"at l = 3, trained alone, the arm choice rises above chance {chance:.2f} + {ABOVE_CHANCE_MARGIN} "
        f"(got {alone:.3f})")
    assert alone >= beside - ALONE_AS_BESIDE_TOL, (
        f"at l = 3, alone it gets at least as far as beside the cheat: {alone:.3f} against {beside:.3f}")


def reverse_jumps(still_low: int | None, jumped_at: int | None, eval_every: int) -> None:
    """Reversed, generation stays at a guess among the arms and then jumps past halfway within
    JUMP_EVALUATIONS evaluations."""
    assert still_low is not None and jumped_at is not None, (
        f"reversed, generation is first near a guess and later past halfway (last low step {still_low}, first "
        f"past halfway {jumped_at})")
    assert jumped_at - still_low <= JUMP_EVALUATIONS * eval_every, (
        f"reversed, generation jumps past halfway within {JUMP_EVALUATIONS} evaluations: it took "
        f"{(jumped_at - still_low) // eval_every} (steps {still_low} -> {jumped_at})")


def grid_forward(table: pd.DataFrame) -> None:
    """The grid's forward claim, on the rows of forward runs (columns deg, path_len, gen_accuracy, fit): from
    l = 4 on every run that fit the cheat is at chance; at l = 3 some seed of each degree rises above chance
    and none solves the task."""
    forward = table.assign(chance=1 / table["deg"])
    long = forward[forward["fit"] & (forward["path_len"] >= 4)]
    off = long[(long["gen_accuracy"] - long["chance"]).abs() > AT_CHANCE_TOL]
    assert off.empty, "from l = 4 on, forward runs that fit the cheat sit at 1/d; not " + ", ".join(
        f"G({r.deg},{r.path_len}) seed {r.seed} at {r.gen_accuracy:.3f}" for r in off.itertuples())
    short = forward[forward["path_len"] == 3]
    below = [d for d, s in short.groupby("deg") if not (s["gen_accuracy"] >= s["chance"] + ABOVE_CHANCE_MARGIN).any()]
    assert not below, f"at l = 3 forward rises above chance on some seed of each degree; not at degree {below}"
    solved = short[short["gen_accuracy"] >= LEARNED]
    assert solved.empty, "at l = 3 forward never solves the task; " + ", ".join(
        f"G({r.deg},3) seed {r.seed} does" for r in solved.itertuples())


def grid_reverse(runs: list[RunRecord]) -> None:
    """Reversed, every cell of the grid learns the task on most of its seeds."""
    not_learned = cells_not_learned(runs)
    assert not not_learned, "reverse is learned in every cell, on most seeds; not in " + ", ".join(
        f"G({d},{l})" for d, l in not_learned)


def live_agrees(committed: float, live: float, what: str = "the live run") -> None:
    """A committed run and the same config trained here agree, up to float rounding."""
    assert abs(committed - live) <= LIVE_AGREES_TOL, (
        f"{what} agrees with the committed table within {LIVE_AGREES_TOL}: {live:.3f} against {committed:.3f}")


def reverse_learned(accuracies, what: str = "reversed generation") -> None:
    """Every run is learned: generation accuracy LEARNED or more."""
    values = _values(accuracies)
    low = [a for a in values if a < LEARNED]
    assert values and not low, f"{what} is learned ({LEARNED} or more): " + ", ".join(f"{a:.3f}" for a in low)
