import pytest
import torch

from nexttok.graphs import PathStar, TaskError, read_file, sample, sample_distinct, seeded_generator, write_file


@pytest.mark.parametrize("deg,path_len,num_nodes", [(2, 5, 20), (3, 4, 10), (5, 5, 50), (1, 2, 2), (4, 2, 5)])
def test_sampler_invariants(deg, path_len, num_nodes):
    task = PathStar(deg, path_len, num_nodes)
    g = sample(task, 500, seeded_generator(1, "x"))
    n = len(g)
    assert g.arms.shape == (n, deg, path_len) and g.edges.shape == (n, deg * (path_len - 1), 2)
    # every arm starts at the source; the d*(l-1) new nodes and the source are distinct labels below N
    assert (g.arms[:, :, 0] == g.source[:, None]).all()
    labels = torch.cat([g.source[:, None], g.arms[:, :, 1:].flatten(1)], dim=1)
    assert (labels.sort(1).values.diff(dim=1) > 0).all()
    assert labels.min() >= 0 and labels.max() < num_nodes
    # the answer is one of the arms, from source to goal
    assert ((g.path[:, None, :] == g.arms).all(-1).sum(1) == 1).all()
    assert (g.path[:, 0] == g.source).all() and (g.path[:, -1] == g.goal).all()
    # the edges are exactly the arms' parent -> child pairs
    arm_edges = torch.stack([g.arms[:, :, :-1], g.arms[:, :, 1:]], -1).flatten(1, 2)
    for i in range(0, n, 50):
        assert sorted(map(tuple, g.edges[i].tolist())) == sorted(map(tuple, arm_edges[i].tolist()))


def test_edges_are_shuffled_and_nothing_visible_marks_the_goal_arm():
    """The sampler keeps the goal's arm first in `arms`; what the model sees must not tell it apart: the edges
    are shuffled, the first edge leaving the source written in the prefix is the goal arm's 1/d of the time, and
    the goal arm's labels are no larger or smaller than the other arms'."""
    task = PathStar(3, 4, 20)
    g = sample(task, 3000, seeded_generator(2, "x"))
    arm_edges = torch.stack([g.arms[:, :, :-1], g.arms[:, :, 1:]], -1).flatten(1, 2)
    # written in arm order, the first edge would always leave the source; shuffled it does 1/(l-1) of the time
    assert (g.edges != arm_edges).any(-1).any(-1).float().mean() > 0.99
    from_source = (g.edges[:, 0, 0] == g.source).float().mean().item()
    assert abs(from_source - 1 / 3) < 0.04
    assert torch.equal(g.path, g.arms[:, 0])
    leaves_source = g.edges[:, :, 0] == g.source[:, None]
    first_child = g.edges[:, :, 1].gather(1, leaves_source.float().argmax(1, keepdim=True)).squeeze(1)
    assert abs((first_child == g.path[:, 1]).float().mean().item() - 1 / 3) < 0.04
    assert abs((g.path[:, 1] < g.arms[:, 1, 1]).float().mean().item() - 1 / 2) < 0.04
    assert abs(torch.bincount(g.goal, minlength=20).float().std().item() / (3000 / 20)) < 0.2


def test_same_seed_same_graphs():
    task = PathStar(2, 5, 20)
    a, b = (sample(task, 100, seeded_generator(7, "train", 3)) for _ in range(2))
    c = sample(task, 100, seeded_generator(7, "train", 4))
    assert all(torch.equal(x, y) for x, y in zip(a._tensors(), b._tensors()))
    assert not torch.equal(a.edges, c.edges)


@pytest.mark.parametrize("deg,path_len,num_nodes,msg", [
    (2, 5, 8, "num_nodes=8 is too small"), (0, 5, 20, "degree must be at least 1"), (2, 1, 20, "path length must be at least 2"),
])
def test_impossible_tasks_are_refused(deg, path_len, num_nodes, msg):
    with pytest.raises(TaskError, match=msg):
        PathStar(deg, path_len, num_nodes)


def test_keys_ignore_edge_order(graphs):
    shuffled = graphs[:]
    shuffled.edges = graphs.edges.flip(1)
    assert torch.equal(graphs.keys(), shuffled.keys())
    assert len(torch.unique(graphs.keys(), dim=0)) == len(graphs)


def test_sample_distinct_gives_disjoint_sets():
    task = PathStar(2, 2, 4)  # 4*3*2 labellings / 2 arm orders * 2 goals = 24 distinct graphs
    train, test = sample_distinct(task, [15, 9], seeded_generator(0, "data"))
    keys = torch.cat([train.keys(), test.keys()])
    assert len(torch.unique(keys, dim=0)) == 24
    with pytest.raises(TaskError, match="distinct graphs"):
        sample_distinct(task, [20, 10], seeded_generator(0, "data"))


def test_text_format_round_trip(tmp_path, graphs, task):
    path = tmp_path / "graphs.txt"
    write_file(graphs, path)
    first = path.read_text().splitlines()[0]
    e = graphs.edges[0].tolist()
    assert first.startswith(f"{e[0][0]},{e[0][1]}|{e[1][0]},{e[1][1]}|")
    assert first.endswith(f"/{graphs.source[0]},{graphs.goal[0]}=" + ",".join(map(str, graphs.path[0].tolist())))
    back, back_task = read_file(path, task.num_nodes)
    assert back_task == task
    for name in ("edges", "source", "goal", "path"):
        assert torch.equal(getattr(back, name), getattr(graphs, name))
    assert torch.equal(back.keys(), graphs.keys())  # the same arms, whatever order they are listed in


GOOD = "1,2|0,1|0,3|3,4/0,4=0,3,4"


@pytest.mark.parametrize("bad,msg", [
    ("1,2|0,1/0,2", "expected"),
    ("1,x|0,1/0,2=0,1,2", "not a comma-separated list"),
    ("1,2,3|0,1/0,2=0,1,2", "does not have two nodes"),
    ("1,2|0,1/0=0,1,2", "not 'source,goal'"),
    ("1,2|0,1|0,3/0,2=0,1,2", "different lengths"),
    ("1,2|0,1|0,3|3,4/0,4=0,1,2", "is not the arm"),
    ("1,2|0,1|1,3|3,4/0,4=0,3,4", "has 2 children"),
    ("1,2|2,1|0,3|3,4/1,4=0,3,4", "cycle"),
    ("1,2|0,1|0,3|3,99/0,99=0,3,99", "not below num_nodes=20"),
    ("1,2|0,1|0,3|3,1/0,1=0,3,1", "distinct nodes"),
])
def test_malformed_line_names_the_line(tmp_path, bad, msg):
    path = tmp_path / "data.txt"
    path.write_text(f"{GOOD}\n{GOOD}\n{bad}\n")
    with pytest.raises(TaskError, match=rf"data.txt:3: .*{msg}"):
        read_file(path, num_nodes=20)


def test_mixed_shapes_empty_and_missing_files(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text(f"{GOOD}\n0,1|1,2/0,2=0,1,2\n")
    with pytest.raises(TaskError, match=r"mixed.txt:2: graph is G\(1, 3\)"):
        read_file(path)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(TaskError, match="no graphs"):
        read_file(tmp_path / "empty.txt")
    with pytest.raises(TaskError, match="no such data file"):
        read_file(tmp_path / "missing.txt")


def test_files_that_are_not_text_or_not_files_are_errors_naming_them(tmp_path):
    (tmp_path / "blob.txt").write_bytes(bytes(range(256)))
    with pytest.raises(TaskError, match=r"blob.txt: not a text file \(byte 128 is not UTF-8\); expected graphs"):
        read_file(tmp_path / "blob.txt")
    with pytest.raises(TaskError, match=r"no such data file \(it is a folder\)"):
        read_file(tmp_path)
    # a label beyond what the sampler and the models take, with num_nodes left to the file
    (tmp_path / "huge.txt").write_text("0,5000000|5000000,7|0,1|1,2/0,7=0,5000000,7\n")
    with pytest.raises(TaskError, match=r"huge.txt: num_nodes=5,000,001 is more node labels than the 1,000,000"):
        read_file(tmp_path / "huge.txt")


def test_a_task_has_at_most_a_million_labels():
    PathStar(2, 5, 1_000_000)
    with pytest.raises(TaskError, match="more node labels than the 1,000,000 this package samples"):
        PathStar(2, 5, 1_000_001)
