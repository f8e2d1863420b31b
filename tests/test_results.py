"""The committed results are a contract: each row and run folder names its run by the key of its config, and the
chapters find rows by recomputing that key. If RunConfig.key() drifts (a new field, another default), every
committed row would silently stop matching; this test fails first."""
import pytest

from nexttok.chapter import results_path
from nexttok.config import OMITTED_AT_DEFAULT, RunConfig
from nexttok.records import RunRecord, read_table
from nexttok.resolve import resolve

TABLES = sorted(results_path().glob("*.csv"))
FOLDERS = sorted(p.parent for p in results_path().glob("*/*/config.json"))


@pytest.mark.parametrize("table", TABLES, ids=lambda p: p.name)
def test_every_committed_row_maps_to_its_stored_key(table):
    rows = read_table(table)
    assert rows, f"{table.name} is empty"
    for row in rows:
        run = RunRecord.from_row(row, table.name)
        assert run.key == row["key"], f"{table.name}: {row['run']}"
        assert all(run.provenance.get(k) is not None for k in ("command", "commit", "device", "date", "wall_seconds")), row["run"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_committed_run_folder_is_named_by_its_key(folder):
    run = RunRecord.load(folder)
    assert folder.name == f"{run.config.mode}-{run.key}"
    assert run.provenance and len(run.history) >= 1


def test_the_fields_left_out_at_their_default_are_named_once():
    """A field added with a default is left out of config.json (and the key) while at that default, so the
    configs and keys of every earlier run stay as they were; read back, a stored config gets those defaults."""
    d = resolve(RunConfig()).to_dict()
    assert not set(OMITTED_AT_DEFAULT) & set(d)
    assert resolve(RunConfig(only_position=2)).to_dict()["only_position"] == 2
    assert "mtp_heads" not in d and resolve(RunConfig(mode="mtp")).to_dict()["mtp_heads"] == 2
    diffusion = resolve(RunConfig(mode="diffusion", diffusion_schedule="uniform"))
    assert diffusion.diffusion_weight == "token" and "diffusion_weight" not in diffusion.to_dict()
    assert diffusion.diffusion_schedule == "uniform" and "diffusion_schedule" not in diffusion.to_dict()
    assert resolve(RunConfig(mode="diffusion")).to_dict()["diffusion_schedule"] == "cosine", "a value off it is kept"
    back = RunConfig.from_dict(diffusion.to_dict(), stored=True)
    assert back == diffusion and back.key() == diffusion.key()


COMMITTED_SWEEPS = {"default": "headline_seeds.csv", "grid": "grid.csv", "indecipherable": "indecipherable_seeds.csv",
                    "mamba": "mamba", "teacherless": "teacherless", "remedies": "remedies", "learned": "learned"}


@pytest.mark.parametrize("sweep", COMMITTED_SWEEPS)
def test_each_named_sweep_resolves_to_the_runs_committed_from_it(sweep):
    """The recipe today gives every config of a named sweep the key of its committed run: a change to a rule (or to
    how a config resolves) that would orphan a committed table fails here, naming the sweep."""
    from nexttok.chapter import committed_runs
    from nexttok.sweep import load_sweep

    keys = {run.key for run in committed_runs(COMMITTED_SWEEPS[sweep])}
    missing = [c for c in load_sweep(sweep) if c.key() not in keys]
    assert not missing, f"{len(missing)} configs of `nexttok sweep {sweep}` have no committed run, e.g. {missing[0]}"
