"""The book's interactive explorer of G(d, l, N): sliders for degree, path length, number of nodes and
seed; it draws one sampled graph and prints its text and token sequence. A shape that cannot exist
(N < 1 + d(l-1)) shows the library's error message instead of raising.

`ipywidgets` is needed only by `explorer()` (it is in the `book` extra); `describe` and `figure` work without it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from .graphs import Graphs, PathStar, TaskError, sample, seeded_generator, to_lines
from .plots import draw_graph
from .tokens import Vocab, encode

# the sliders' ranges: G(1,2) up to G(6,10), which needs 55 labels
RANGES = {"deg": (1, 6), "path_len": (2, 10), "num_nodes": (2, 64), "seed": (0, 99)}
LABELS = {"deg": "degree d", "path_len": "length l", "num_nodes": "nodes N", "seed": "seed"}


def describe(deg: int, path_len: int, num_nodes: int, seed: int) -> tuple[Graphs | None, str]:
    """One graph of G(deg, path_len) over num_nodes labels, drawn with `seed`, and its text (the authors'
    line and the tokens); or (None, the library's error message) when the task is impossible."""
    try:
        task = PathStar(deg, path_len, num_nodes)
    except TaskError as err:
        return None, f"No such graph: {err}."
    graphs = sample(task, 1, seeded_generator(seed, "book-explorer"))
    vocab = Vocab(num_nodes)
    return graphs, f"text:   {to_lines(graphs)[0]}\ntokens: {vocab.decode(encode(graphs, vocab)[0])}"


def figure(graphs: Graphs) -> plt.Figure:
    """The drawing of the first graph in `graphs`, closed: a figure to display, which pyplot does not show again."""
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_graph(graphs, 0, ax=ax)
    plt.close(fig)
    return fig


def explorer(deg: int = 2, path_len: int = 5, num_nodes: int = 20, seed: int = 0):
    """Display the widget: four sliders, and below them the drawing and the token sequence. Returns the sliders.

    The first graph is an ordinary output of the cell, and a slider change replaces it in place (an IPython display
    update). ipywidgets' `interactive_output` would draw it into an Output widget while the cell runs, and nbclient,
    which papermill and jupyter-book execute notebooks with, can then wait forever on an idle kernel
    (jupyter/nbclient#312): this chapter's build hung on it."""
    import ipywidgets as widgets
    from IPython.display import Pretty, display

    values = {"deg": deg, "path_len": path_len, "num_nodes": num_nodes, "seed": seed}
    # a value outside a slider's default range (e.g. papermill -p num_nodes 100) widens the range
    sliders = {name: widgets.IntSlider(value=values[name], min=min(lo, values[name]), max=max(hi, values[name]),
                                       description=LABELS[name], continuous_update=False)
               for name, (lo, hi) in RANGES.items()}

    def view():
        graphs, text = describe(**{name: slider.value for name, slider in sliders.items()})
        return (Pretty("") if graphs is None else figure(graphs)), Pretty(text)

    rows = list(sliders.values())
    display(widgets.VBox([widgets.HBox(rows[:2]), widgets.HBox(rows[2:])]))
    handles = [display(shown, display_id=True) for shown in view()]

    def redraw(_change):
        for handle, shown in zip(handles, view()):
            handle.update(shown)

    for slider in rows:
        slider.observe(redraw, names="value")
    return sliders
