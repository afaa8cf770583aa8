"""Bad command-line values exit 2 with the argument, the rule and the fix; never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.cli.main import main


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse rejects a value before the command runs
        return int(exc.code or 0)


@pytest.mark.parametrize(("argv", "needle"), [
    (["run", "--workers", "-3"], "argument --workers: -3 is too small"),
    (["run", "--workers", "0"], "argument --workers: 0 is too small"),
    (["run", "--metrics-port", "-5"], "argument --metrics-port: -5 is not a port number"),
    (["runs", "list", "--limit", "0"], "argument --limit"),
    (["proxy", "serve", "--port", "70000"], "argument --port: 70000 is not a port number"),
    (["sla", "serve", "--interval", "-1"], "argument --interval: -1 must be a finite number"),
    (["schedule", "serve", "--max-active", "0"], "argument --max-active"),
    (["schedule", "serve", "--http-port", "-1"], "argument --http-port"),
    (["backfill", "p:p", "--start", "2026-01-01", "--end", "2026-01-02", "-j", "0"],
     "argument -j/--parallel"),
    (["chaos", "explore", "--max-examples", "0"], "argument --max-examples"),
    (["chaos", "explore", "--budget", "nan"], "argument --budget"),
    (["contracts", "test", "--max-examples", "abc"], "'abc' is not a whole number"),
])
def test_impossible_numbers_exit_2(argv: list[str], needle: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_output_under_a_regular_file_is_refused_before_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    journal = tmp_path / "j.json"
    journal.write_text('{"format": "reliability.chaos.journal/1"}')
    code = main(["chaos", "report", str(journal), "-o", str(blocker / "r.html")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--output" in err and "is a file, not a directory" in err


def test_os_errors_become_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import reliability.cli.run as run_cli

    def boom(args: object) -> int:
        raise NotADirectoryError(20, "Not a directory", str(tmp_path / "afile" / "x"))

    monkeypatch.setattr(run_cli, "cmd_runs_list", boom)
    assert main(["runs", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'afile' / 'x'}: Not a directory")
    assert "Fix:" in err


def test_runbooks_reject_missing_templates_dir_and_path_like_pipeline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["runbooks", "list", "--templates", str(tmp_path / "nope")]) == 2
    assert "--templates" in capsys.readouterr().err
    code = main(["runbooks", "render", "--family", "step_failed", "--pipeline", "../../x",
                 "--out", str(tmp_path / "site")])
    assert code == 2
    assert "not a plain name" in capsys.readouterr().err
    assert not (tmp_path.parent / "x").exists()


def test_sla_serve_refuses_a_damaged_ledger(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ledger.db").write_text("not a database " * 20)
    assert main(["sla", "serve", "--home", str(tmp_path), "--port", "0"]) == 2
    assert "cannot read the run ledger" in capsys.readouterr().err
