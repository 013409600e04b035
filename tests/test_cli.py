"""The ``meanfield`` command through ``main(argv)``: every subcommand, shared options before or after
the subcommand, one-line errors and exit codes (2 bad input, 1 failed run, 130 interrupted)."""

import json
from dataclasses import dataclass, field

import pytest

from meanfield.cli import main
from meanfield.study import (Experiment, ExperimentResult, Science, agreement, register_experiment,
                             unregister_experiment)


@dataclass(frozen=True)
class Inner:
    """The inner part of the toy config.

    Attributes:
        rate: a rate (per unit time).
        steps: how many steps.
    """

    rate: float = 1.0
    steps: int = 3


@dataclass(frozen=True)
class ToyConfig:
    """The toy experiment of the CLI tests.

    Attributes:
        inner: a nested config.
        x: the measured number is 2 x.
        lams: weight decays.
        mode: ok, diverge, interrupt, interrupt_t or bug.
    """

    inner: Inner = field(default_factory=Inner)
    x: float = 1.0
    lams: tuple = (0.1,)
    mode: str = "ok"


class _Interrupt(KeyboardInterrupt):
    t = 12.5


def _run(cfg, ctx):
    from meanfield.flow import DivergenceError
    if cfg.mode == "diverge":
        raise DivergenceError("the risk rose 5 times in a row at t=3.0; lower flow.dt")
    if cfg.mode == "interrupt":
        raise KeyboardInterrupt
    if cfg.mode == "interrupt_t":
        raise _Interrupt
    if cfg.mode == "bug":
        raise TypeError("unsupported operand")
    s = {}
    agreement(s, "double", 2 * cfg.x, 2.0, 1e-12)
    s["rate"] = cfg.inner.rate * cfg.inner.steps
    return ExperimentResult(s, [{"t": float(i), "y": cfg.x * i} for i in range(cfg.inner.steps)])


def _plot(run):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([r["t"] for r in run.history], [r["y"] for r in run.history])
    run.savefig(fig, "line.png")
    return ["line.png"]


@pytest.fixture
def toy():
    register_experiment(Experiment("toy_cli", "a toy for the CLI tests", ToyConfig, _run,
                                   science=Science(claim="2x = 2 at x = 1"), plot=_plot,
                                   large={"x": 3.0}), overwrite=True)
    yield "toy_cli"
    unregister_experiment("toy_cli")


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_run_prints_its_directory_and_v_goes_anywhere(tmp_path, toy, capsys):
    for i, argv in enumerate((["-v", "run", toy], ["run", "-v", toy], ["run", toy, "-v"],
                              ["--set", "x=1", "run", toy, "--set", "inner.rate=2"])):
        out = tmp_path / f"r{i}"
        assert main(argv + ["--out", str(out)]) == 0
        text = capsys.readouterr().out
        assert f"run directory: {out}" in text.splitlines()
        assert "all theory checks agree" in text
    # --set before and after the subcommand both count
    s = json.loads((tmp_path / "r3" / "summary.json").read_text())
    assert s["rate"] == 6.0
    assert (tmp_path / "r0" / "line.png").exists()
    # --size large applies the experiment's overrides before --set
    assert main(["run", toy, "--size", "large", "--out", str(tmp_path / "big")]) == 0
    assert json.loads((tmp_path / "big" / "summary.json").read_text())["double"] == 6.0


def test_run_bad_input_is_one_line_and_writes_nothing(tmp_path, toy, capsys):
    out = tmp_path / "never"
    for argv, what in ((["run", toy, "--set", "inner.nope=1"], "unknown parameter 'inner.nope'"),
                       (["run", toy, "--set", "inner.steps=2.5"], "expects an integer"),
                       (["run", toy, "--set", "noequals"], "KEY=VALUE"),
                       (["run", "no_such_experiment"], "unknown experiment"),
                       (["run", toy, "--device", "tpu"], "device"),
                       (["run", toy, "--backend", "nope"], "unknown backend"),
                       (["run"], "required: name"),
                       (["frobnicate"], "invalid choice")):
        assert main(argv + ["--out", str(out)]) == 2, argv
        err = _err_line(capsys)
        assert err.startswith("meanfield: error: ") and what in err, (argv, err)
        assert not out.exists()  # validation before any directory is made
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["run", toy, "--out", str(afile)]) == 2
    assert "is a file" in _err_line(capsys)
    # a finished run is not overwritten
    assert main(["run", toy, "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["run", toy, "--out", str(tmp_path / "r")]) == 2
    assert "--overwrite" in _err_line(capsys)
    assert main(["run", toy, "--out", str(tmp_path / "r"), "--overwrite"]) == 0


def test_failed_and_interrupted_runs(tmp_path, toy, capsys):
    assert main(["run", toy, "--set", "mode=diverge", "--out", str(tmp_path / "d")]) == 1
    err = _err_line(capsys)
    assert err.startswith("meanfield: error: run failed: DivergenceError") and "lower flow.dt" in err
    assert main(["run", toy, "--set", "mode=interrupt_t", "--out", str(tmp_path / "i")]) == 130
    assert _err_line(capsys) == ("interrupted at t=12.5; checkpoint saved; run the same command "
                                 "to resume")
    assert main(["run", toy, "--set", "mode=interrupt", "--out", str(tmp_path / "j")]) == 130
    assert _err_line(capsys) == ("interrupted; the last checkpoint is kept; run the same command "
                                 "to resume")
    assert main(["run", toy, "--set", "mode=bug", "--out", str(tmp_path / "b")]) == 1
    assert "TypeError: unsupported operand" in _err_line(capsys)


def test_list_names_and_describes(toy, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"{toy}: a toy for the CLI tests" in out and "three_atoms:" in out
    assert "inner.rate" not in out
    for argv in (["list", "-v", toy], ["-v", "list", toy], ["list", toy]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        lines = {ln.split()[0]: ln for ln in out.splitlines()[1:] if ln.startswith("    ")}
        assert set(lines) == {"inner.rate", "inner.steps", "x", "lams", "mode"}
        assert "float = 1.0" in lines["inner.rate"] and "a rate (per unit time)" in lines["inner.rate"]
        assert "int = 3" in lines["inner.steps"] and "how many steps" in lines["inner.steps"]
        assert "comma-separated" in out  # the tuple syntax is stated
    assert main(["list", "nope"]) == 2
    assert "unknown experiment 'nope'" in _err_line(capsys)


def test_info_and_help(capsys):
    assert main(["-v", "info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("meanfield ") and "backend dense" in out and "plugins:" in out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("run", "list", "info", "sweep", "plot", "report", "atlas", "bench", "--plugin"):
        assert cmd in out
    assert main(["sweep", "--help"]) == 0
    assert "--dask-timeout" in capsys.readouterr().out


def test_sweep_and_plot(tmp_path, toy, capsys):
    d = tmp_path / "s"
    argv = ["sweep", toy, "--grid", "inner.rate=1,2", "--grid", "x=0.5:2:3:log", "--out", str(d),
            "--quiet", "--set", "inner.steps=2"]
    assert main(["-v"] + argv) == 0
    out = capsys.readouterr().out
    assert "6 point(s) computed" in out and f"sweep directory: {d}" in out
    assert main(argv) == 0  # the same command resumes
    assert "0 point(s) computed, 6 already done" in capsys.readouterr().out
    # another fixed value: refused, naming the difference and the two ways on
    assert main(argv[:-1] + ["inner.steps=3"]) == 2
    err = _err_line(capsys)
    assert "inner.steps = 2 there, 3 now" in err and "new --out" in err and "--grid axis" in err
    assert main(["sweep", toy, "--grid", "nope=1,2", "--out", str(tmp_path / "n")]) == 2
    assert "cannot sweep 'nope'" in _err_line(capsys)
    assert not (tmp_path / "n").exists()
    # plot: a sweep directory redraws its phase diagram; -v before or after
    (d / "phase.png").unlink()
    assert main(["-v", "plot", str(d), "--metric", "double"]) == 0
    assert (d / "phase.png").exists()
    assert main(["plot", str(d), "-v", "--file", "other.png"]) == 0
    assert (d / "other.png").exists()
    for bad in ("../escape.png", str(tmp_path / "abs.png"), "sub/x.png"):
        assert main(["plot", str(d), "--file", bad]) == 2
        assert "inside" in _err_line(capsys)
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "abs.png").exists()
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "not a directory" in _err_line(capsys)
    # plot: a run directory redraws the run's figures from its files
    r = tmp_path / "run"
    assert main(["run", toy, "--out", str(r)]) == 0
    (r / "line.png").unlink()
    assert main(["plot", str(r)]) == 0
    assert (r / "line.png").exists() and f"figure: {r / 'line.png'}" in capsys.readouterr().out


def test_report(tmp_path, toy, capsys):
    assert main(["report", "--only", toy, "--out", str(tmp_path), "--set", f"{toy}.inner.rate=3",
                 "-v"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and (tmp_path / "report.md").exists()
    assert main(["report", "--only", toy, "--out", str(tmp_path), "--set", "inner.rate=3"]) == 2
    assert "NAME.key=value" in _err_line(capsys)


def test_atlas_gets_the_parsed_arguments(monkeypatch, capsys):
    import meanfield.atlas as atlas
    seen = []

    def fake(**kw):
        seen.append(kw)
        return 0

    monkeypatch.setattr(atlas, "atlas_command", fake)
    assert main(["-v", "atlas", "--list"]) == 0
    assert main(["atlas", "-v", "--list"]) == 0
    assert main(["--device", "cpu", "--out", "A", "atlas", "--size", "small", "--only", "x,y"]) == 0
    assert [s["list_only"] for s in seen] == [True, True, False]
    assert {k: seen[2][k] for k in ("out", "device", "size", "only")} == \
        {"out": "A", "device": "cpu", "size": "small", "only": "x,y"}
    assert main(["atlas", "--set", "a=1"]) == 2
    assert "does not take --set" in _err_line(capsys)
    assert main(["atlas", "--size", "huge"]) == 2


def test_bench_is_routed_unchanged(monkeypatch, capsys):
    assert main(["bench", "--help"]) == 0
    assert "usage: meanfield bench" in capsys.readouterr().out
    assert main(["-v", "bench", "--help"]) == 0
    import meanfield.bench as bench
    seen = []
    monkeypatch.setattr(bench, "main", lambda argv: seen.append(list(argv)) or 0)
    assert main(["bench", "-v", "--grid", "100,50,2,relu", "--repeats", "1", "--no-baseline"]) == 0
    assert seen == [["--grid", "100,50,2,relu", "--repeats", "1", "--no-baseline"]]
    monkeypatch.undo()
    assert main(["bench", "--no-such-option"]) == 2  # bench's own parser: its usage error


@pytest.mark.parametrize("args,msg", [
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--backends", "foo"], "unknown backend 'foo'"),
    (["--grid", "abc"], "expected m,n,d"),
    (["--grid", "1e3,0,2"], "whole numbers >= 1"),
    (["--grid", "1e3,1e2,2,nope"], "unknown activation 'nope'"),
    (["--device", "tpu"], "not a device"),
])
def test_bench_refuses_bad_options_before_running(args, msg, capsys, monkeypatch):
    """Bad bench options end in a usage error naming them, before anything is timed (they ran
    the whole default grid, or ended in an IndexError)."""
    import meanfield.bench as bench
    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("ran the benchmark"))
    assert main(["bench", *args]) == 2
    assert msg in capsys.readouterr().err


def test_real_experiment_through_the_cli(tmp_path, capsys):
    out = tmp_path / "ta"
    assert main(["run", "three_atoms", "--set", "flow.t_end=1e2", "--set", "m=20",
                 "--set", "flow.ds=0.1", "--out", str(out), "--quiet"]) == 0
    assert f"run directory: {out}" in capsys.readouterr().out
    import meanfield
    df = meanfield.load(out)
    assert len(df) > 0 and "gap" in df.columns
    assert df.attrs["config"]["experiment"] == "three_atoms"
    assert df.attrs["summary"]["gap"] == pytest.approx(df["gap"].iloc[-1])


def test_real_atlas_list(capsys):
    assert main(["-v", "atlas", "--list"]) == 0
    out = capsys.readouterr().out
    assert "three_atoms:" in out and "ufm:" in out
    assert main(["atlas", "--only", "nope", "--out", "x"]) == 2
    assert "unknown atlas entry 'nope'" in _err_line(capsys)


def test_a_blow_up_exits_non_zero_naming_the_divergence(tmp_path, capsys):
    rc = main(["run", "enclosure", "--set", "flow.dt=1000", "--set", "n=40", "--set", "model.m=30",
               "--out", str(tmp_path / "e"), "--quiet"])
    assert rc == 1
    err = _err_line(capsys)
    for part in ("DivergenceError", "diverged at step", "t = ", "dt = ", "flow.dt"):
        assert part in err, err
    assert not (tmp_path / "e" / "summary.json").exists()
