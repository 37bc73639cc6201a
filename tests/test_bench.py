"""The benchmark suite's quick mode (``python -m bench --quick``) on a cheap section: table and page, not timings."""
from bench.run import main


def test_quick_lockstep_writes_the_expected_rows(tmp_path, capsys):
    out = tmp_path / "PERFORMANCE.md"
    results = main(["--quick", "--only", "lockstep", "--out", str(out)])
    assert list(results) == ["lockstep"]
    table = results["lockstep"].tables[0]
    sets = ["Compare tab defaults (6 panels)", "6 schedules, ddim 50 steps each"]
    assert [r[0] for r in table.rows] == [s for s in sets for _ in range(2)]  # eager, and the app's network
    assert [r[1].split(" (")[0] for r in table.rows[:2]] == ["load_model default", "app's network"]
    assert all(r[2] == "6" and r[-1].endswith("×") for r in table.rows)
    page = out.read_text()
    for text in ("QUICK MODE", "## Machine", "## 3. Lock-step comparison", "| lock-step 6 panels ≥ 2× sequential |",
                 "| Compare tab defaults (6 panels) | load_model default (eager float32) | 6 |"):
        assert text in page
    assert "6 schedules, ddim 50 steps each" in capsys.readouterr().out
