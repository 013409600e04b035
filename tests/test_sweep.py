"""Sweeps: dotted grids, the same table batched / one by one / in a pool / on Dask, kill-and-resume,
the sweep's identity, narrow batch fallbacks, validated files, locks, the Dask no-worker timeout."""

import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from meanfield.study import (Experiment, ExperimentResult, get_experiment, register_experiment,
                             unregister_experiment)
from meanfield.study.lock import LockedError
from meanfield.sweep import DaskTimeoutError, load_results, parse_grid, sweep

# tiny three-atom systems: ~200 log-time steps each
FIXED = {"flow.t_end": 1e3, "m": 30, "flow.ds": 0.05}
GRID = {"data.p1": "0.5,1", "data.p3": "1,2"}


def _same_table(a, b, rel=1e-12):
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


def _hows(out):
    return {json.loads(f.read_text())["how"] for f in (out / "points").glob("*.json")}


# ----------------------------------------------------------------- a toy experiment (in process)
@dataclass(frozen=True)
class Opt:
    """Options.

    Attributes:
        k: an integer.
        mode: ok, bad_batch (run_batch raises ValueError when a batch holds x < 0) or bug.
    """

    k: int = 2
    mode: str = "ok"


@dataclass(frozen=True)
class ToyCfg:
    """A toy.

    Attributes:
        opt: nested options.
        x: the input.
        lams: a tuple.
    """

    opt: Opt = Opt()
    x: float = 1.0
    lams: tuple = (0.1,)


def _one(c):
    if c.opt.mode == "bug":
        raise TypeError("a bug in run")
    if c.x < 0:
        raise ValueError(f"x = {c.x} < 0")
    return ExperimentResult({"y": c.x * c.opt.k, "lsum": float(sum(c.lams))})


def _batch(cfgs, seeds, ctx):
    if any(c.opt.mode == "bug" for c in cfgs):
        raise TypeError("a bug in run_batch")
    if any(c.x < 0 for c in cfgs):
        raise ValueError("one system has x < 0")
    return [_one(c) for c in cfgs]


@pytest.fixture
def toy():
    register_experiment(Experiment("toy_sweep", "toy", ToyCfg, lambda c, ctx: _one(c), run_batch=_batch,
                                   batch_keys=("x",)), overwrite=True)
    yield "toy_sweep"
    unregister_experiment("toy_sweep")


def test_grid_parsing_dotted_keys(toy):
    exp = get_experiment("three_atoms")
    ax = parse_grid(exp, "data.p3", "0.1:10:3:log")
    assert ax.log and ax.values == (0.1, 1.0, 10.0)
    assert parse_grid(exp, "data.p1", "0:1:5").values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert parse_grid(exp, "m", "10:20:3").values == (10, 15, 20)  # int parameter
    assert parse_grid(exp, "flow.integrator", "euler,heun").values == ("euler", "heun")
    with pytest.raises(ValueError, match="cannot sweep 'nope'"):
        parse_grid(exp, "nope", "1,2")
    with pytest.raises(ValueError, match="positive ends"):
        parse_grid(exp, "data.p1", "0:1:3:log")
    with pytest.raises(ValueError, match="integer"):
        parse_grid(exp, "m", "1.5,2")
    t = get_experiment(toy)
    assert parse_grid(t, "opt.k", "1:3:3").values == (1, 2, 3)
    assert parse_grid(t, "lams", "0.1,0.2;0.3").values == ((0.1, 0.2), (0.3,))  # tuples: ';'


def test_same_table_batched_and_single(tmp_path):
    batched = sweep("three_atoms", GRID, seeds=2, fixed=FIXED, out=tmp_path / "b", batch=True,
                    plot=False)
    single = sweep("three_atoms", GRID, seeds=2, fixed=FIXED, out=tmp_path / "s", batch=False,
                   plot=False)
    assert batched.computed == single.computed == 8 and batched.failed == 0
    assert _hows(tmp_path / "b") == {"batch of 8"} and _hows(tmp_path / "s") == {"single"}
    _same_table(batched.rows, single.rows)  # the table does not depend on the grouping
    _same_table(load_results(tmp_path / "b"), load_results(tmp_path / "s"))
    for r in batched.rows:  # each value is the experiment's own number
        assert abs(r["gap"] - math.log(r["data.p3"] / (2 * r["data.p1"]))) < 0.1


@pytest.mark.slow
def test_same_table_in_a_pool_and_on_dask(tmp_path):
    distributed = pytest.importorskip("distributed")
    batched = sweep("three_atoms", GRID, seeds=2, fixed=FIXED, out=tmp_path / "b", plot=False)
    pool = sweep("three_atoms", GRID, seeds=2, fixed=FIXED, out=tmp_path / "p", batch=False,
                 workers=2, plot=False)  # a local process pool (forkserver/spawn)
    assert pool.computed == 8
    _same_table(batched.rows, pool.rows)
    pool5 = sweep("three_atoms", GRID, seeds=2, fixed=FIXED, out=tmp_path / "p5", workers=5,
                  plot=False)  # five workers: the 8 systems are grouped into other batches
    assert pool5.computed == 8
    _same_table(batched.rows, pool5.rows)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask = sweep("three_atoms", GRID, seeds=2, fixed=FIXED, out=tmp_path / "d",
                     scheduler=cluster.scheduler_address, plot=False)
    assert dask.computed == 8
    _same_table(batched.rows, dask.rows)


def test_killed_sweep_resumes_to_the_same_table(tmp_path):
    out = tmp_path / "k"
    fixed = {**FIXED, "flow.ds": 0.02}
    grid = ["--grid", "data.p1=0.5,1,2", "--grid", "data.p3=0.5,1,2,4"]
    sets = [x for k, v in fixed.items() for x in ("--set", f"{k}={v}")]
    cmd = [sys.executable, "-m", "meanfield.cli", "sweep", "three_atoms", *grid, *sets,
           "--no-batch", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "points").glob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "points").glob("*.json")))
    assert 3 <= done < 12, f"kill came too late ({done} points done): {proc.stderr.read()[-500:]}"
    assert (out / ".lock").exists()  # left behind by the killed process: a stale lock
    g = {"data.p1": "0.5,1,2", "data.p3": "0.5,1,2,4"}
    res = sweep("three_atoms", g, fixed=fixed, out=out, batch=False, plot=False)
    assert res.computed == 12 - done and res.skipped == done
    assert not (out / ".lock").exists()
    ref = sweep("three_atoms", g, fixed=fixed, out=tmp_path / "ref", batch=True, plot=False)
    assert len(res.rows) == 12
    _same_table(res.rows, ref.rows)
    _same_table(load_results(out), ref.rows)


def test_failing_point_recorded_fallback_named_not_in_table(tmp_path, caplog):
    # scale_a = nan makes NaN initial particles: the batch cannot run together (ValueError)
    grid = {"data.p3": "1,2", "scale_a": [1.0, float("nan")]}
    with caplog.at_level("WARNING", logger="meanfield.sweep"):
        res = sweep("three_atoms", grid, fixed=FIXED, out=tmp_path / "f", plot=False)
    assert res.computed == 4 and res.failed == 2
    assert "cannot run together" in caplog.text and "NaN" in caplog.text
    hows = _hows(tmp_path / "f")
    assert len(hows) == 1 and next(iter(hows)).startswith("fallback: ValueError")
    bad = [r for r in res.rows if r["status"] == "failed"]
    good = [r for r in res.rows if r["status"] == "ok"]
    assert len(bad) == 2 and all(math.isnan(r["scale_a"]) for r in bad)
    assert all("NaN" in r["error"] and r["error"].startswith("ValueError") for r in bad)
    assert len(good) == 2 and all(math.isfinite(r["gap"]) and r["error"] == "" for r in good)
    header = (tmp_path / "f" / "results.csv").read_text().splitlines()[0].split(",")
    assert "how" not in header and "wall_seconds" not in header
    # a re-run does not retry recorded failures (they are results), unless asked
    assert sweep("three_atoms", grid, fixed=FIXED, out=tmp_path / "f", plot=False).computed == 0
    assert sweep("three_atoms", grid, fixed=FIXED, out=tmp_path / "f", plot=False,
                 retry_failed=True).computed == 2


def test_only_batch_errors_fall_back(tmp_path, toy):
    res = sweep(toy, {"x": "-1,1,2"}, out=tmp_path / "v", plot=False)
    assert (res.computed, res.failed) == (3, 1)
    assert _hows(tmp_path / "v") == {"fallback: ValueError: one system has x < 0"}
    ok = sweep(toy, {"x": "1,2,3"}, out=tmp_path / "o", plot=False)
    assert _hows(tmp_path / "o") == {"batch of 3"}
    assert [r["y"] for r in ok.rows] == [2.0, 4.0, 6.0]
    with pytest.raises(TypeError, match="a bug in run_batch"):  # a bug is not hidden
        sweep(toy, {"x": "1,2"}, fixed={"opt.mode": "bug"}, out=tmp_path / "bug", plot=False)
    with pytest.raises(TypeError, match="a bug in run$"):  # nor recorded as a failed point
        sweep(toy, {"x": "1,2"}, fixed={"opt.mode": "bug"}, out=tmp_path / "bug1", plot=False,
              batch=False)
    assert not list((tmp_path / "bug1" / "points").glob("*.json"))


def test_identity_refuses_other_fixed_parameters(tmp_path, toy):
    out = tmp_path / "i"
    first = sweep(toy, {"x": "1,2"}, fixed={"opt.k": "3"}, out=out, plot=False)
    assert first.computed == 2
    spec = json.loads((out / "sweep.json").read_text())
    assert spec["experiment"] == toy and spec["fixed"] == {"opt.k": 3}
    # the same, resolved (3.0 is the integer 3): resumes
    assert sweep(toy, {"x": "1,2"}, fixed={"opt.k": 3.0}, out=out, plot=False).computed == 0
    with pytest.raises(ValueError) as e:
        sweep(toy, {"x": "1,2"}, fixed={"opt.k": "4"}, out=out, plot=False)
    msg = str(e.value)
    assert "opt.k = 3 there, 4 now" in msg and "new --out" in msg and "--grid axis" in msg
    with pytest.raises(ValueError, match="opt.k = 3 there, 2 now"):  # dropping --set: the default
        sweep(toy, {"x": "1,2"}, out=out, plot=False)
    with pytest.raises(ValueError, match="lams"):
        sweep(toy, {"x": "1"}, fixed={"opt.k": "3", "lams": "0.1,0.2"}, out=out, plot=False)
    # a changed grid only adds points; a fixed parameter may become an axis
    more = sweep(toy, {"x": "1,2,4"}, fixed={"opt.k": "3"}, out=out, plot=False)
    assert (more.computed, more.skipped) == (1, 2)
    axis = sweep(toy, {"x": "1,2,4", "opt.k": "3,5"}, out=out, plot=False)
    assert (axis.computed, axis.skipped) == (3, 3)
    assert len(axis.rows) == 6
    spec = json.loads((out / "sweep.json").read_text())
    assert len(spec["grids"]) == 4 and [a["key"] for a in spec["axes"]] == ["x", "opt.k"]
    with pytest.raises(ValueError, match="holds a sweep of 'toy_sweep'"):
        sweep("three_atoms", {"data.p3": "1"}, fixed=FIXED, out=out, plot=False)


def test_bad_files_are_named(tmp_path, toy, capsys):
    out = tmp_path / "bad"
    sweep(toy, {"x": "1,2"}, out=out, plot=False)
    point = sorted((out / "points").glob("*.json"))[0]
    good = point.read_text()
    for text in ("{}", "[]", "{not json"):
        point.write_text(text)
        with pytest.raises(ValueError, match=point.name):
            sweep(toy, {"x": "1,2"}, out=out, plot=False)
    point.write_text(good)
    spec = out / "sweep.json"
    for text in ("[]", "{\"experiment\": 3}", "{corrupt"):
        spec.write_text(text)
        with pytest.raises(ValueError, match="sweep.json"):
            sweep(toy, {"x": "1,2"}, out=out, plot=False)
        from meanfield.cli import main
        assert main(["plot", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "sweep.json" in err


def test_concurrent_sweeps_refused_and_stale_lock_taken_over(tmp_path, toy, capsys):
    out = tmp_path / "c"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket
        (out / ".lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(),
                                               "what": "sweep"}))
        with pytest.raises(LockedError, match=f"another sweep \\(pid {other.pid}"):
            sweep(toy, {"x": "1"}, out=out, plot=False)
        from meanfield.cli import main
        assert main(["sweep", toy, "--grid", "x=1", "--out", str(out), "--quiet"]) == 2
        assert "another sweep" in capsys.readouterr().err
        assert not (out / "points").exists()  # nothing was computed
    finally:
        other.kill()
        other.wait()
    res = sweep(toy, {"x": "1"}, out=out, plot=False)  # the holder is gone: its lock is stale
    assert res.computed == 1 and not (out / ".lock").exists()


def test_dask_without_workers_stops_and_keeps_points(tmp_path, toy):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "dk"
    sweep(toy, {"x": "1"}, out=out, plot=False)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        t0 = time.monotonic()
        with pytest.raises(DaskTimeoutError, match="no Dask worker for 1 s"):
            sweep(toy, {"x": "1,2"}, out=out, scheduler=cluster.scheduler_address, plot=False,
                  dask_timeout=1.0)
        assert time.monotonic() - t0 < 30
    assert len(load_results(out)) == 1 and not (out / ".lock").exists()


def test_phase_diagram_and_plot_command(tmp_path):
    res = sweep("three_atoms", {"data.p1": "0.5,1", "data.p3": "0.5:4:4:log"}, fixed=FIXED,
                out=tmp_path / "p")
    assert res.figure is not None and res.figure.exists()
    from meanfield.cli import main
    res.figure.unlink()
    assert main(["plot", str(tmp_path / "p"), "--metric", "|gap|", "--threshold", "0.1"]) == 0
    assert res.figure.exists()
    assert main(["plot", str(tmp_path / "p"), "--metric", "nope"]) == 2


def test_phase_rows_are_this_identity_only():
    """The diagram averages over seeds only: rows of other fixed parameters are left out."""
    from meanfield.sweep import _this_identity
    spec = {"base": {"x": 1.0, "opt.k": 3, "lams": [0.1], "data": "a", "data.n": 5},
            "axes": [{"key": "x"}, {"key": "data"}]}
    rows = [{"x": 1.0, "opt.k": 3.0, "lams": "0.1", "data": "a", "data.n": 5.0, "seed": 0.0},
            {"x": 2.0, "opt.k": 3.0, "lams": "0.1", "data": "b", "data.n": "", "seed": 1.0},
            {"x": 2.0, "opt.k": 4.0, "lams": "0.1", "data": "a", "data.n": 5.0, "seed": 0.0},
            {"x": 2.0, "opt.k": 3.0, "lams": "0.1,0.2", "data": "a", "data.n": 5.0, "seed": 0.0}]
    assert _this_identity(rows, spec) == rows[:2]


def test_point_files_are_the_identity_without_sweep_json(tmp_path):
    """After sweep.json is deleted (as its corruption message advises), a sweep with other fixed
    parameters is refused from the point files, not mixed into results.csv; a corrupt sweep.json
    names itself, not a point file."""
    out = tmp_path / "s"
    sweep("three_atoms", {"data.p1": "0.5,1"}, fixed={**FIXED, "flow.t_end": 10.0}, out=out,
          plot=False)
    (out / "sweep.json").unlink()
    with pytest.raises(ValueError, match=r"no sweep.json but holds 2 point\(s\).*m = 30 there, 40"):
        sweep("three_atoms", {"data.p1": "0.5,1"}, fixed={**FIXED, "flow.t_end": 10.0, "m": 40},
              out=out, plot=False)
    assert len(load_results(out)) == 2
    res = sweep("three_atoms", {"data.p1": "0.5,1,2"}, fixed={**FIXED, "flow.t_end": 10.0},
                out=out, plot=False)                      # the same parameters: resumes
    assert res.skipped == 2 and res.computed == 1 and (out / "sweep.json").exists()
    (out / "sweep.json").write_text("{bad")
    with pytest.raises(ValueError, match="sweep description.*rebuilds it"):
        sweep("three_atoms", {"data.p1": "0.5"}, fixed=FIXED, out=out, plot=False)


def test_huge_grid_and_empty_out_refused_before_planning(tmp_path):
    with pytest.raises(ValueError, match="1,000,000 values, more than max_points"):
        sweep("three_atoms", {"data.p1": "0.5:2:1000000"}, out=tmp_path / "h", plot=False)
    with pytest.raises(ValueError, match=r"200 data.p1 x 100 data.p3 x 2 seed\(s\)"):
        sweep("three_atoms", {"data.p1": "0.5:2:200", "data.p3": "0.5:2:100"}, seeds=2,
              out=tmp_path / "h", plot=False, max_points=1000)
    assert not (tmp_path / "h").exists()
    with pytest.raises(ValueError, match="--out is empty"):
        sweep("three_atoms", {"data.p1": "0.5,1"}, out="", plot=False)
