"""User code through ``--plugin``: a plugin file (tests/plugin_example.py, the README's example)
defining a distribution and an experiment on it works for run, sweep (local worker processes and a
Dask cluster), plot and ``meanfield.load``, all through ``main(argv)``."""

import time
from pathlib import Path

import pytest

import meanfield
from meanfield.cli import main

EXAMPLE = Path(__file__).with_name("plugin_example.py")


@pytest.fixture
def plugin(tmp_path):
    """The example plugin written into tmp_path (a fresh path: imported anew by each test)."""
    path = tmp_path / "my_plugin.py"
    path.write_text(EXAMPLE.read_text())
    yield str(path)
    from meanfield.study import EXPERIMENTS, unregister_experiment
    if "two_points" in EXPERIMENTS.list():
        unregister_experiment("two_points")


def test_the_example_is_short():
    assert len(EXAMPLE.read_text().splitlines()) <= 40


def test_run_list_sweep_plot_with_workers(tmp_path, plugin, capsys):
    run = tmp_path / "run"
    assert main(["--plugin", plugin, "run", "two_points", "--set", "data.gap=2", "--out", str(run)]) == 0
    assert f"run directory: {run}" in capsys.readouterr().out
    df = meanfield.load(run)
    assert df.attrs["summary"]["distance"] == 2.0 and df.attrs["summary"]["distance_agrees"] is True
    assert df.attrs["config"]["parameters"]["data"] == {"name": "two_points", "params": {"gap": 2.0}}
    assert main(["list", "-v", "two_points", "--plugin", plugin]) == 0
    out = capsys.readouterr().out
    assert "data.gap" in out and "data.mass" in out and "a factor on the measured distance" in out
    sw = tmp_path / "sw"
    argv = ["--plugin", plugin, "sweep", "two_points", "--grid", "data.gap=0.5:4:4:log",
            "--grid", "scale=1,2", "--workers", "2", "--out", str(sw), "--quiet"]
    t0 = time.monotonic()
    assert main(argv) == 0, capsys.readouterr().err
    wall = time.monotonic() - t0
    assert "8 point(s) computed" in capsys.readouterr().out
    df = meanfield.load(sw)
    assert len(df) == 8 and (df["status"] == "ok").all()
    assert df["distance"].tolist() == pytest.approx((df["scale"] * df["data.gap"]).tolist())
    assert df["data.gap"].dtype.kind == "f" and df["distance_agrees"].dtype == bool
    assert main(argv) == 0 and "0 point(s) computed, 8 already done" in capsys.readouterr().out
    (sw / "phase.png").unlink()
    assert main(["--plugin", plugin, "plot", str(sw)]) == 0
    assert (sw / "phase.png").exists()
    assert wall < 120


@pytest.mark.slow  # ~30 s: a two-process LocalCluster starting torch twice
def test_sweep_on_a_dask_cluster(tmp_path, plugin, capsys):
    distributed = pytest.importorskip("distributed")
    sw = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert main(["--plugin", plugin, "sweep", "two_points", "--grid", "data.gap=1,2,3",
                     "--no-batch", "--scheduler", cluster.scheduler_address, "--out", str(sw),
                     "--quiet"]) == 0, capsys.readouterr().err
    assert "3 point(s) computed" in capsys.readouterr().out
    assert main(["--plugin", plugin, "plot", str(sw)]) == 0
    df = meanfield.load(sw)
    assert sorted(df["distance"]) == [1.0, 2.0, 3.0]


def test_missing_plugin_is_one_line(tmp_path, capsys):
    assert main(["--plugin", str(tmp_path / "nope.py"), "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("meanfield: error: ") and "nope.py" in err and "\n" not in err
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert main(["list", "--plugin", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.py failed while loading: RuntimeError: boom" in err and "\n" not in err


def test_load_atlas_layout(tmp_path, plugin):
    """An atlas directory (DIR/<entry>/<panel>/results.csv): every panel, with entry and panel."""
    from meanfield.study.plugins import load_plugins
    from meanfield.sweep import sweep
    load_plugins([plugin])
    for entry, panel, gaps in (("e1", "a", "1,2"), ("e1", "b", "3"), ("e2", "a", "4")):
        sweep("two_points", {"data.gap": gaps}, out=tmp_path / "atlas" / entry / panel, plot=False)
    df = meanfield.load(tmp_path / "atlas")
    assert list(df.columns[:2]) == ["entry", "panel"] and len(df) == 4
    assert sorted(zip(df["entry"], df["panel"], df["distance"])) == [
        ("e1", "a", 1.0), ("e1", "a", 2.0), ("e1", "b", 3.0), ("e2", "a", 4.0)]
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        meanfield.load(tmp_path)
    (tmp_path / "atlas" / "e1" / "a" / "sweep.json").write_text("[]")
    with pytest.raises(ValueError, match="sweep.json"):
        meanfield.load(tmp_path / "atlas")


def test_workers_without_the_file_get_its_source(tmp_path, plugin):
    """A Dask worker on another machine: the plugin path does not exist there, its text is shipped."""
    from meanfield.study import EXPERIMENTS, unregister_experiment
    from meanfield.study.experiment import get_experiment
    from meanfield.sweep import _plan
    from meanfield.sweep_exec import run_unit
    text = Path(plugin).read_text()
    gone = str(tmp_path / "elsewhere" / "remote_plugin.py")  # never written here
    if "two_points" in EXPERIMENTS.list():
        unregister_experiment("two_points")
    with pytest.raises(ValueError):
        run_unit("two_points", [], {}, [gone])
    from meanfield.study.plugins import load_plugins
    load_plugins([plugin])
    points = _plan(get_experiment("two_points"), [], {"data.gap": "3"}, [0])
    unregister_experiment("two_points")
    recs = run_unit("two_points", points, {"device": "cpu"}, [gone], {gone: text})
    assert recs[0]["status"] == "ok" and recs[0]["summary"]["distance"] == 3.0


def test_plugin_as_a_module_name(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_module_plugin.py").write_text(EXAMPLE.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["run", "two_points", "--plugin", "my_module_plugin", "--out",
                     str(tmp_path / "r")]) == 0
        assert f"run directory: {tmp_path / 'r'}" in capsys.readouterr().out
    finally:
        from meanfield.study import EXPERIMENTS, unregister_experiment
        if "two_points" in EXPERIMENTS.list():
            unregister_experiment("two_points")
