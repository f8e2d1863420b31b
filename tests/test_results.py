"""The committed results are a contract: each row and run folder names its run by the key of its config, and the
chapters find rows by recomputing that key. If RunConfig.key() drifts (a new field, another default), every
committed row would silently stop matching; this test fails first."""
import json

import pytest

from nexttok.chapter import results_path
from nexttok.config import RUN_ONLY, RunConfig
from nexttok.records import read_table

FIELDS = set(RunConfig.__dataclass_fields__) - set(RUN_ONLY)
TABLES = sorted(results_path().glob("*.csv"))
FOLDERS = sorted(p.parent for p in results_path().glob("*/*/config.json"))


def config_of(row: dict) -> RunConfig:
    return RunConfig.from_dict({k: v for k, v in row.items() if k in FIELDS and v is not None})


@pytest.mark.parametrize("table", TABLES, ids=lambda p: p.name)
def test_every_committed_row_maps_to_its_stored_key(table):
    rows = read_table(table)
    assert rows, f"{table.name} is empty"
    for row in rows:
        assert config_of(row).key() == row["key"], f"{table.name}: {row['run']}"
        assert all(row.get(k) is not None for k in ("command", "commit", "device", "date", "wall_seconds")), row["run"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_committed_run_folder_is_named_by_its_key(folder):
    cfg = RunConfig.from_dict(json.loads((folder / "config.json").read_text()))
    assert folder.name == f"{cfg.mode}-{cfg.key()}"
    assert (folder / "metrics.json").exists() and (folder / "provenance.json").exists()


def test_the_fields_left_out_at_their_default_are_named_once():
    """A field added with a default is left out of config.json (and the key) while at that default, so the
    configs and keys of every earlier run stay as they were."""
    from nexttok.config import OMITTED_AT_DEFAULT

    d = RunConfig().to_dict()
    assert not set(OMITTED_AT_DEFAULT) & set(d)
    assert RunConfig(only_position=2).to_dict()["only_position"] == 2
    assert "mtp_heads" not in d and RunConfig(mode="mtp").to_dict()["mtp_heads"] == 2
