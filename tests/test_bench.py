"""The benchmark suite's quick mode (``python -m bench --quick``) on a cheap section: table and page, not timings.

A benchmark's size is bench/'s: here the section runs on the smallest model (toy-moons, a 2-D MLP), and the served
network's background compile is stubbed out (each queued shape is dropped, every call stays eager): compiling is
tests/test_serving.py's to check, and speed ratios are never asserted in a unit test."""
from bench.run import main
from engine.serving import BackgroundCompiled


def _drop_queued_shapes(self: BackgroundCompiled) -> None:
    with self._lock:
        self._jobs.clear()
        self._idle.set()


def test_quick_lockstep_writes_the_expected_rows(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(BackgroundCompiled, "_work", _drop_queued_shapes)
    out = tmp_path / "PERFORMANCE.md"
    results = main(["--quick", "--only", "lockstep", "--model", "toy-moons", "--out", str(out)])
    assert list(results) == ["lockstep"]
    table = results["lockstep"].tables[0]
    sets = ["Compare tab defaults (6 panels)", "6 schedules, ddim 50 steps each"]
    assert [r[0] for r in table.rows] == [s for s in sets for _ in range(2)]  # eager, and the app's network
    assert [r[1].split(" (")[0] for r in table.rows[:2]] == ["load_model default", "app's network"]
    assert all(r[2] == "6" and r[-1].endswith("×") for r in table.rows)
    # the counts come from the engine: one batched call per round of the lock-step run, fewer calls than NFE
    assert all(int(r[4]) < int(r[3]) for r in table.rows)
    page = out.read_text()
    for text in ("QUICK MODE", "## Machine", "## 3. Lock-step comparison", "| lock-step 6 panels ≥ 2× sequential |",
                 "| Compare tab defaults (6 panels) | load_model default (eager float32) | 6 |", "(toy-moons, n=1,"):
        assert text in page
    assert "6 schedules, ddim 50 steps each" in capsys.readouterr().out


def test_the_app_section_makes_requests_that_the_app_answers():
    """Section 4 sends /generate as the browser does, its inputs read from the app's API in the page's order: the
    app answers them, streaming frames (a hand-written list of the inputs once fell behind the page's controls and
    every request was refused with 422)."""
    import httpx
    from gradio_client import Client

    from bench.app_overhead import SETTINGS, api_inputs, fn_index, free_port, sse_request
    from space import CSS, build_demo

    demo = build_demo()
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, css=CSS)
    root = f"http://127.0.0.1:{port}/"
    try:
        client = Client(root, verbose=False, download_files=False)
        settings = dict(SETTINGS, model="mnist-ddpm", steps=3)
        data = api_inputs(client, "/generate", settings)
        assert data[:6] == [settings[k] for k in ("model", "schedule", "sampler", "steps", "seed", "n")]
        with httpx.Client(timeout=120) as http:
            total, first = sse_request(http, root, fn_index(root, "generate"), data)
        assert first is not None and 0 < first <= total
    finally:
        demo.close()


def test_quick_fast_section_times_one_step_served_eager_and_in_the_app(tmp_path, monkeypatch):
    """Section 9 on the shipped mnist-fast (skipped until it ships, and then the page says why): served and eager
    rows per batch, the browser's request, and its target row."""
    import engine
    from bench.run import targets

    monkeypatch.setattr(BackgroundCompiled, "_work", _drop_queued_shapes)
    results = main(["--quick", "--only", "fast", "--out", str(tmp_path / "PERFORMANCE.md")])
    section = results["fast"]
    goal = "one step, distilled: a batch of 16 served in < 50 ms on two cores (mnist-fast)"
    [target] = [t for t in targets(results) if t.goal == goal]
    if "mnist-fast" not in engine.list_models():
        assert section.skipped and target.met is None
        return
    rows = section.tables[0].rows
    assert [r[0] for r in rows] == ["16", "1", "16, /generate as the browser makes it"]
    assert all(float(r[1]) > 0 for r in rows[:2]) and rows[0][3].endswith("×")
    if engine.model_card("mnist-fast").get("withdrawn"):  # the app does not offer it: no request to time
        assert rows[2][1] == "not offered in the app (withdrawn)" and "not offered in the app" in target.measured
    else:
        assert float(rows[2][1]) > 0
    assert target.measured.startswith("served: batch 16 ") and target.met in (True, False)
