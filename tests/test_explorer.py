"""The book's explorer: a graph and its tokens for a valid shape, the library's message for an impossible one."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from nexttok.explorer import describe, explorer, show  # noqa: E402
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


def test_show_draws_only_valid_shapes(capsys):
    plt.close("all")
    assert show(2, 5, 8, 0) is None and not plt.get_fignums()
    assert "too small" in capsys.readouterr().out
    assert show(2, 3, 8, 0) is not None
    assert "tokens:" in capsys.readouterr().out


def test_explorer_widget_has_the_four_controls():
    pytest.importorskip("ipywidgets")
    box = explorer(deg=2, path_len=5, num_nodes=100, seed=3)
    sliders = [w for row in box.children[:2] for w in row.children]
    assert [s.value for s in sliders] == [2, 5, 100, 3]  # a value past the default range widens it
    plt.close("all")
