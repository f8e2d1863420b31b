"""scripts/paper_scale.sh end to end at a tiny scale on the CPU: the bench, three concurrent runs sized to the
budget, and the table with provenance that the chapter "At paper scale" reads."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nexttok.records import read_table

pytestmark = pytest.mark.slow  # the slow tier: `make test` runs it, `make test-fast` does not

ROOT = Path(__file__).resolve().parents[1]


def test_paper_scale_script_writes_the_table(tmp_path):
    env = {**os.environ, "PAPER_SCALE_TINY": "1", "BUDGET_MINUTES_TINY": "0.05", "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "paper_scale.sh"), str(tmp_path)], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["train_samples_per_s"] > 0 and bench["config"]["layers"] == 1
    rows = read_table(tmp_path / "paper_scale.csv")
    assert [row["mode"] for row in rows] == ["forward", "reverse", "teacherless"]
    assert {row["positions"] for row in rows} == {"learned"} and {row["n_train"] for row in rows} == {512}
    assert all(row["commit"] and row["device"].startswith("cpu") and row["steps"] >= 10 for row in rows)
