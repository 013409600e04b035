"""``meanfield report``: tables built from summary.json, figures embedded, failures isolated."""

import json
import re
from pathlib import Path

import pytest

from meanfield.cli import main as cli
from meanfield.report import md_code, parse_report_sets, theory_rows
from meanfield.study import (Experiment, ExperimentResult, Science, agreement, register_experiment,
                             unregister_experiment)


def main(argv):
    return cli(["report", *argv])


@pytest.fixture
def toy_experiments():
    """Two tiny registered experiments: one agrees/disagrees by construction, one raises."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Inner:
        label: str = "a"

    @dataclass(frozen=True)
    class Cfg:
        x: float = 1.0
        inner: Inner = Inner()

    def run_ok(cfg, ctx):
        s = {}
        agreement(s, "double", 2 * cfg.x, 2.0, 1e-12)
        agreement(s, "square", cfg.x ** 2 + 0.5, 1.0, 0.1)   # disagrees
        s["reported_only"] = 3.25
        if ctx.out is not None:
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots()
            ax.plot([0, 1], [0, cfg.x])
            ctx.savefig(fig, "line.png")
        return ExperimentResult(s, [{"t": 0.0}], figures=("line.png",))

    def run_bad(cfg, ctx):
        raise RuntimeError("deliberate failure for the test")

    register_experiment(Experiment("toy_ok", "toy", Cfg, run_ok, large={"x": 2.0},
                                   science=Science(claim="2x = 2 at x = 1",
                                                   source="a paper (issue 7), docs/science.md §9")),
                        overwrite=True)
    register_experiment(Experiment("toy_bad", "always fails", Cfg, run_bad, claim="none"),
                        overwrite=True)
    yield
    unregister_experiment("toy_ok")
    unregister_experiment("toy_bad")


def _rows_md(md: str, name: str) -> str:
    m = re.search(rf"\| {name} \| ([^|]*) \| ([^|]*) \| ([^|]*) \| ([^|]*) \|", md)
    assert m, f"row {name} missing"
    return [g.strip() for g in m.groups()]


def test_report_tables_and_failure_isolated(tmp_path, toy_experiments):
    rc = main(["--out", str(tmp_path), "--only", "toy_bad,toy_ok"])
    assert rc == 1  # one failure and one disagreement
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    assert _rows_md(md, "double") == ["2", "2", "1e-12", "yes"]
    assert _rows_md(md, "square") == ["1", "1.5", "0.1", "NO"]
    assert "FAILED" in md and "deliberate failure for the test" in md
    assert "| reported_only | 3.25 |" in md
    # HTML: the same rows, the failure, the figure with a relative path that exists
    assert re.search(r"<td>double</td><td class='num'>2</td><td class='num'>2</td>"
                     r"<td class='num'>1e-12</td><td class='ok'>yes</td>", html)
    assert "<td class='bad'>NO</td>" in html and "deliberate failure" in html
    imgs = re.findall(r"<img src='([^']+)'", html)
    assert imgs == ["toy_ok/line.png"] and (tmp_path / imgs[0]).exists()
    # the run directory of the good experiment is complete
    s = json.loads((tmp_path / "toy_ok" / "summary.json").read_text())
    assert s["double_agrees"] is True and s["square_agrees"] is False


def test_report_size_large_and_set(tmp_path, toy_experiments):
    assert main(["--out", str(tmp_path / "a"), "--only", "toy_ok", "--size", "large"]) == 1
    assert _rows_md((tmp_path / "a" / "report.md").read_text(), "double")[1] == "4"
    assert main(["--out", str(tmp_path / "b"), "--only", "toy_ok", "--size", "large",
                 "--set", "toy_ok.x=3"]) == 1
    assert _rows_md((tmp_path / "b" / "report.md").read_text(), "double")[1] == "6"


def test_report_bad_arguments(tmp_path, toy_experiments, capsys):
    assert main(["--out", str(tmp_path), "--only", "nonexistent"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "--only", "toy_ok", "--set", "toy_ok.y=1"]) == 2
    assert "unknown parameter" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "--only", "toy_ok", "--set", "ufm.num=3"]) == 2
    with pytest.raises(ValueError, match="NAME.key=value"):
        parse_report_sets(["num=3"])
    assert parse_report_sets(["three_atoms.flow.t_end=1e4"]) == {"three_atoms": {"flow.t_end": "1e4"}}


def test_report_escapes_user_values_and_cites_the_docs(tmp_path, toy_experiments):
    value = "x`](http://evil) <i>evil|"
    assert main(["--out", str(tmp_path), "--only", "toy_ok", "--set", f"toy_ok.inner.label={value}"]) == 1
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    assert md_code(f"inner.label={value}") in md
    assert "``inner.label=x`](http://evil) <i>evil|``" in md  # one code span, longer fence
    assert "<i>evil" not in html and "&lt;i&gt;evil" in html and "x`](http://evil)" in html
    for page in (md, html):
        assert "docs/science.md" in page and "issue" not in page.lower()
        assert "/work/" not in page


def test_md_code_cannot_be_closed_from_inside():
    import re
    for text in ("plain", "a`b", "``x``", "`start", "end`", "a|b"):
        span = md_code(text)
        fence = re.match(r"`+", span).group(0)
        inner = span[len(fence):-len(fence)]
        assert span.endswith(fence) and fence not in inner.replace(fence + "`", "")
        assert max((len(m) for m in re.findall(r"`+", inner)), default=0) < len(fence)
    assert md_code("a|b", table=True) == "`a\\|b`"


def test_theory_rows_order_and_fields():
    s = {"a": 1.0, "a_theory": 1.0, "a_tol": 0.1, "a_agrees": True, "b": 2.0, "c_theory": 0.0}
    assert theory_rows(s) == [("a", 1.0, 1.0, 0.1, True)]


def _renamed(name: str, key: str) -> str:
    """A parameter's current name (tests/fixtures/renames/NAME.json while experiments are ported)."""
    path = Path(__file__).parent / "fixtures" / "renames" / f"{name}.json"
    if not path.exists():
        return key
    return json.loads(path.read_text()).get("renames", {}).get(key, key)


def test_report_runs_real_experiments(tmp_path):
    """three_atoms and ufm at tiny sizes through the CLI; every row agrees."""
    from meanfield.cli import main as cli
    sets = {"three_atoms": {"flow.t_end": "1e4", "m": "60"},
            "ufm": {"num": "3", "cases": "mse_none,ce", "lam_min": "0.02", "lam_max": "0.3"}}
    argv = [x for name, kv in sets.items() for k, v in kv.items()
            for x in ("--set", f"{name}.{_renamed(name, k)}={v}")]
    rc = cli(["report", "--out", str(tmp_path), "--only", "three_atoms,ufm", *argv])
    md = (tmp_path / "report.md").read_text()
    assert _rows_md(md, "gap")[3] == "yes"
    for case in ("mse_none", "ce"):
        assert _rows_md(md, f"value_err_{case}")[3] == "yes"
        assert _rows_md(md, f"normW2_err_{case}")[3] == "yes"
    html = (tmp_path / "report.html").read_text()
    for f in re.findall(r"<img src='([^']+)'", html):
        assert (tmp_path / f).exists()
    assert "ufm/ufm_vs_lambda.png" in html and "three_atoms/gap.png" in html
    assert rc == 0
