"""Sweeps: same table batched / one by one / on a Dask cluster, kill-and-resume, failures, locks, grids."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from meanfield.experiments.registry import get_experiment
from meanfield.sweep import SweepLockedError, load_results, parse_grid, sweep

# tiny three-atom systems: ~200 log-time steps each
FIXED = {"t_end": 1e3, "m": 30, "ds": 0.05}
GRID = {"p1": "0.5,1", "p3": "1,2"}


def _same_table(a, b, rel=1e-6):
    """Same rows (ids, order, columns); numbers equal to rel; text equal."""
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert list(a[0]) == list(b[0])
    for ra, rb in zip(a, b):
        for k in ra:
            x, y = ra[k], rb[k]
            if isinstance(x, float) and isinstance(y, float):
                if math.isnan(x) or math.isnan(y):
                    assert math.isnan(x) and math.isnan(y), k
                else:
                    assert abs(x - y) <= rel * max(abs(x), abs(y), 1e-12), (k, x, y)
            else:
                assert x == y, (k, x, y)


def test_grid_parsing():
    exp = get_experiment("three_atoms")
    ax = parse_grid(exp, "p3", "0.1:10:3:log")
    assert ax.log and ax.values == (0.1, 1.0, 10.0)
    assert parse_grid(exp, "p1", "0:1:5").values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert parse_grid(exp, "m", "10:20:3").values == (10, 15, 20)  # int parameter
    assert parse_grid(exp, "integrator", "euler,heun").values == ("euler", "heun")
    with pytest.raises(ValueError, match="has parameters"):
        parse_grid(exp, "nope", "1,2")
    with pytest.raises(ValueError, match="positive ends"):
        parse_grid(exp, "p1", "0:1:3:log")


def test_same_table_batched_single_pool_and_dask(tmp_path):
    distributed = pytest.importorskip("distributed")
    batched = sweep("three_atoms", GRID, seeds=2, fixed=FIXED, out=tmp_path / "b", batch=True,
                    plot=False)
    single = sweep("three_atoms", GRID, seeds=2, fixed=FIXED, out=tmp_path / "s", batch=False,
                   plot=False)
    assert batched.computed == single.computed == 8 and batched.failed == 0
    # the batched run really ran as batches (one per shared shape group), the other point by point
    hows = {json.loads(f.read_text())["how"] for f in (tmp_path / "b" / "points").glob("*.json")}
    assert hows == {"batch of 8"}
    _same_table(batched.rows, single.rows)
    _same_table(load_results(tmp_path / "b"), load_results(tmp_path / "s"))
    # each value is the experiment's own number: gap -> log(p3 / 2 p1) within the short-run error
    for r in batched.rows:
        assert abs(r["gap"] - math.log(r["p3"] / (2 * r["p1"]))) < 0.1
    pool = sweep("three_atoms", GRID, seeds=2, fixed=FIXED, out=tmp_path / "p", batch=False,
                 workers=2, plot=False)  # a local process pool (forkserver/spawn)
    assert pool.computed == 8
    _same_table(batched.rows, pool.rows)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask = sweep("three_atoms", GRID, seeds=2, fixed=FIXED, out=tmp_path / "d",
                     scheduler=cluster.scheduler_address, plot=False)
    assert dask.computed == 8
    _same_table(batched.rows, dask.rows)


def test_killed_sweep_resumes_to_the_same_table(tmp_path):
    out = tmp_path / "k"
    grid = ["--grid", "p1=0.5,1,2", "--grid", "p3=0.5,1,2,4"]
    sets = [x for k, v in {**FIXED, "ds": 0.02}.items() for x in ("--set", f"{k}={v}")]
    cmd = [sys.executable, "-m", "meanfield.cli", "sweep", "three_atoms", *grid, *sets,
           "--no-batch", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "points").glob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "points").glob("*.json")))
    assert 3 <= done < 12, f"kill came too late ({done} points done): {proc.stderr.read()[-500:]}"
    assert (out / ".lock").exists()  # left behind by the killed process: a stale lock
    res = sweep("three_atoms", {"p1": "0.5,1,2", "p3": "0.5,1,2,4"}, fixed={**FIXED, "ds": 0.02},
                out=out, batch=False, plot=False)
    assert res.computed == 12 - done and res.skipped == done
    assert not (out / ".lock").exists()
    ref = sweep("three_atoms", {"p1": "0.5,1,2", "p3": "0.5,1,2,4"}, fixed={**FIXED, "ds": 0.02},
                out=tmp_path / "ref", batch=True, plot=False)
    assert len(res.rows) == 12
    _same_table(res.rows, ref.rows)
    _same_table(load_results(out), ref.rows)


def test_failing_point_is_recorded_and_others_finish(tmp_path):
    # scale_a = nan makes NaN initial particles: that system fails, the batch falls back to one by one
    res = sweep("three_atoms", {"p3": "1,2", "scale_a": [1.0, float("nan")]}, fixed=FIXED,
                out=tmp_path / "f", plot=False)
    assert res.computed == 4 and res.failed == 2
    bad = [r for r in res.rows if r["status"] == "failed"]
    good = [r for r in res.rows if r["status"] == "ok"]
    assert len(bad) == 2 and all(math.isnan(r["scale_a"]) for r in bad)
    assert all("NaN" in r["error"] and r["error"].startswith("ValueError") for r in bad)
    assert len(good) == 2 and all(math.isfinite(r["gap"]) and r["error"] == "" for r in good)
    # a re-run does not retry recorded failures (they are results), unless asked
    assert sweep("three_atoms", {"p3": "1,2", "scale_a": [1.0, float("nan")]}, fixed=FIXED,
                 out=tmp_path / "f", plot=False).computed == 0
    assert sweep("three_atoms", {"p3": "1,2", "scale_a": [1.0, float("nan")]}, fixed=FIXED,
                 out=tmp_path / "f", plot=False, retry_failed=True).computed == 2


def test_concurrent_sweeps_refused_and_stale_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "c"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket
        (out / ".lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        with pytest.raises(SweepLockedError, match=f"another sweep \\(pid {other.pid}"):
            sweep("three_atoms", {"p3": "1"}, fixed=FIXED, out=out, plot=False)
        from meanfield.cli import main
        assert main(["sweep", "three_atoms", "--grid", "p3=1", "--out", str(out), "--quiet"]) == 2
        assert "another sweep" in capsys.readouterr().err
        assert not (out / "points").exists()  # nothing was computed
    finally:
        other.kill()
        other.wait()
    # the holder is gone: its lock is stale and taken over
    res = sweep("three_atoms", {"p3": "1"}, fixed=FIXED, out=out, plot=False)
    assert res.computed == 1 and not (out / ".lock").exists()


def test_changed_grid_adds_points_and_keeps_old(tmp_path):
    out = tmp_path / "g"
    first = sweep("three_atoms", {"p3": "1,2"}, fixed=FIXED, out=out, plot=False)
    second = sweep("three_atoms", {"p3": "1,2,4"}, fixed=FIXED, out=out, plot=False)
    assert (first.computed, second.computed, second.skipped) == (2, 1, 2)
    third = sweep("three_atoms", {"p3": "8"}, fixed=FIXED, out=out, plot=False)
    assert third.computed == 1
    assert sorted(r["p3"] for r in third.rows) == [1.0, 2.0, 4.0, 8.0]
    old = {r["id"]: r for r in first.rows}
    _same_table(first.rows, [r for r in third.rows if r["id"] in old])
    spec = json.loads((out / "sweep.json").read_text())
    assert len(spec["grids"]) == 3
    from meanfield.experiments import registry
    registry.register_experiment(registry.Experiment("other_exp", "x", get_experiment("three_atoms").config,
                                                     get_experiment("three_atoms").run))
    try:
        with pytest.raises(ValueError, match="holds a sweep of 'three_atoms'"):
            sweep("other_exp", {"p3": "1"}, fixed=FIXED, out=out, plot=False)
    finally:
        registry._REGISTRY.pop("other_exp", None)


def test_phase_diagram_and_plot_command(tmp_path):
    res = sweep("three_atoms", {"p1": "0.5,1", "p3": "0.5:4:4:log"}, fixed=FIXED,
                out=tmp_path / "p")
    assert res.figure is not None and res.figure.exists()
    from meanfield.cli import main
    os.remove(res.figure)
    assert main(["plot", str(tmp_path / "p"), "--metric", "|gap|", "--threshold", "0.1"]) == 0
    assert res.figure.exists()
    assert main(["plot", str(tmp_path / "p"), "--metric", "nope"]) == 2
    # the theory boundary of a one-axis diagram: the vertical line at p3 = 2 p1 (p1 = 1)
    import matplotlib.pyplot as plt
    from meanfield.phase import plot_phase
    rows = [r for r in res.rows if r["p1"] == 1.0]
    fig = plot_phase(rows, "p3", None, "|gap|", threshold=0.05, experiment="three_atoms")
    xs = [ln.get_xdata()[0] for ln in fig.axes[0].lines if len(set(ln.get_xdata())) == 1
          and ln.get_linestyle() == "--"]
    assert len(xs) == 1 and abs(xs[0] - 2.0) < 0.02
    assert fig.axes[0].get_xscale() == "log"  # the grid was logarithmic
    plt.close(fig)
