"""The book's explorer: a graph and its tokens for a valid shape, the library's message for an impossible one."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from IPython.display import Pretty  # noqa: E402

from nexttok.explorer import describe, explorer, figure  # noqa: E402
from nexttok.graphs import PathStar, TaskError  # noqa: E402
from nexttok.tokens import prefix_len  # noqa: E402


def test_describe_valid_shape_is_a_seeded_graph_with_its_tokens():
    graphs, text = describe(3, 4, 12, seed=5)
    assert graphs.task == (3, 4) and len(graphs) == 1
    line, tokens = text.splitlines()
    assert line.startswith("text: ") and "=" in line
    assert len(tokens.split()[1:]) == prefix_len(3 * 3) + 4
    again, text_again = describe(3, 4, 12, seed=5)
    assert text_again == text and describe(3, 4, 12, seed=6)[1] != text


def test_describe_impossible_shape_returns_the_library_message():
    graphs, text = describe(3, 5, 12, seed=0)  # needs 1 + 3*4 = 13 labels
    with pytest.raises(TaskError) as err:
        PathStar(3, 5, 12)
    assert graphs is None and str(err.value) in text


def test_figure_draws_the_graph_and_leaves_no_open_figure():
    plt.close("all")
    graphs, _ = describe(2, 3, 8, 0)
    fig = figure(graphs)
    assert not plt.get_fignums()  # closed: displayed once by the explorer, not again by pyplot
    assert fig.axes and fig.axes[0].collections  # the nodes were drawn


class Shown:
    """A stand-in for IPython's display: records what is displayed, and each display handle's updates."""

    def __init__(self):
        self.displayed, self.updates = [], []

    def __call__(self, obj, display_id=None):
        self.displayed.append(obj)
        if display_id:
            return Handle(self, len(self.displayed) - 1)


class Handle:
    def __init__(self, shown, index):
        self.shown, self.index = shown, index

    def update(self, obj):
        self.shown.updates.append((self.index, obj))


def texts(objects):
    """The text of each plain-text display among `objects`: the explorer's tokens or message, and the empty text that
    stands in for the drawing when there is no graph."""
    return [obj.data for obj in objects if isinstance(obj, Pretty)]


def test_explorer_shows_sliders_then_graph_and_a_slider_change_replaces_them(monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    shown = Shown()
    monkeypatch.setattr("IPython.display.display", shown)
    sliders = explorer(deg=2, path_len=5, num_nodes=100, seed=3)
    assert [s.value for s in sliders.values()] == [2, 5, 100, 3]  # a value past the default range widens it
    box, drawing, text = shown.displayed
    assert isinstance(box, ipywidgets.VBox)
    assert [w for row in box.children for w in row.children] == list(sliders.values())
    assert isinstance(drawing, plt.Figure) and texts([text]) == [describe(2, 5, 100, 3)[1]]

    sliders["deg"].value = 3  # the drawing and the tokens are replaced in place, nothing new is displayed
    assert len(shown.displayed) == 3 and [i for i, _ in shown.updates] == [1, 2]
    assert isinstance(shown.updates[0][1], plt.Figure) and texts([shown.updates[1][1]]) == [describe(3, 5, 100, 3)[1]]

    sliders["num_nodes"].value = 10  # G(3,5) needs 13 labels: the drawing empties and the text is the message
    (_, drawing), (_, text) = shown.updates[2:]
    assert texts([drawing]) == [""] and "too small" in texts([text])[0]
    assert not plt.get_fignums()
