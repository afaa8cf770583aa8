"""Steps an orchestrator did not run: ``skipped`` ones (a branch not taken) end a run that
succeeds, and a resumed host run takes the outcome of the steps it copied from its origin.
Only steps still pending change."""

from __future__ import annotations

from pathlib import Path

from reliability.runner import Ledger


def _states(led: Ledger, run_id: str) -> dict[str, tuple[str, str | None]]:
    return {s["step"]: (s["status"], s["output_hash"] or s["error"]) for s in led.steps(run_id)}


def test_skipped_steps_settle_a_run_that_succeeds_or_fails_by_what_ran(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as led:
        for run_id in ("ok", "bad"):
            led.adopt_run(run_id, "p", run_id, {}, ["a", "b", "c"])
            led.start_attempt(run_id, "a", 1, 7, {})
            led.commit_step(run_id, "a", 1, "1" * 64, "json", 3)
        assert led.skip_steps("ok", {"a": "branch not taken", "b": "branch not taken"}) == [
            "b"]  # a had run
        assert led.settle_run("ok") is None  # c is still open
        led.start_attempt("ok", "c", 1, 7, {})
        led.commit_step("ok", "c", 1, "2" * 64, "json", 3)
        assert led.settle_run("ok") == "succeeded"
        assert _states(led, "ok")["b"] == ("skipped", "branch not taken")

        led.skip_steps("bad", {"b": "branch not taken"})
        led.set_step("bad", "c", "failed", "boom")
        assert led.settle_run("bad") == "failed"
        assert led.get_run("bad").error == "step 'c' failed: boom"


def test_a_resumed_run_takes_what_its_origin_committed_or_skipped(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as led:
        led.adopt_run("first", "p", "k1", {}, ["a", "b", "c", "d"])
        led.start_attempt("first", "a", 1, 7, {"x": "0" * 64})
        led.commit_step("first", "a", 1, "1" * 64, "json", 3)
        led.skip_steps("first", {"b": "branch not taken"})
        led.set_step("first", "c", "failed", "boom")
        led.adopt_run("again", "p", "k2", {}, ["a", "b", "c", "d"])
        led.start_attempt("again", "d", 1, 8, {})
        carried = led.carry_steps("again", "first", ["a", "b", "c", "d"])
        assert [r["step"] for r in carried] == ["a", "b"]  # c failed there, d runs here
        assert _states(led, "again") == {"a": ("succeeded", "1" * 64),
                                         "b": ("skipped", "branch not taken"),
                                         "c": ("pending", None), "d": ("running", None)}
        assert led.attempts("again", "a") == []  # copied, not run
        assert [c["output_hash"] for c in led.commits("again")] == ["1" * 64]
        assert led.carry_steps("again", "first", ["a"]) == []  # once
