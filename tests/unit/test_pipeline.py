from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reliability import CycleError, DefinitionError, Pipeline, Retry
from reliability.pipeline import DataInterval, load_pipeline


def _noop() -> None:
    return None


def test_dependencies_come_from_parameter_names_and_inputs_mapping() -> None:
    p = Pipeline("deps")

    @p.step
    def a() -> int:
        return 1

    @p.step(inputs={"x": "a"}, after=["a"])
    def b(x: int, ctx: object = None) -> int:
        return x

    @p.step
    def c(a: int, b: int, params: object) -> int:
        return a + b

    assert p.steps["b"].inputs == {"x": "a"}
    assert p.steps["c"].inputs == {"a": "a", "b": "b"}
    assert p.steps["c"].wants_params and not p.steps["c"].wants_ctx
    assert p.validate() == ["a", "b", "c"]
    assert p.downstream("a") == {"b", "c"}


def test_cycle_error_names_the_cycle_path() -> None:
    p = Pipeline("loop")
    p.add(_noop, name="a", after=["c"])
    p.add(_noop, name="b", after=["a"])
    p.add(_noop, name="c", after=["b"])
    with pytest.raises(CycleError) as err:
        p.validate()
    cycle = err.value.cycle
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"} and len(cycle) == 4
    assert " -> ".join(cycle) in str(err.value)


def test_self_dependency_is_a_cycle() -> None:
    p = Pipeline("selfish")
    p.add(_noop, name="a", after=["a"])
    with pytest.raises(CycleError, match="a -> a"):
        p.validate()


def test_unknown_dependency_names_step_and_suggests() -> None:
    p = Pipeline("typo")

    @p.step
    def Ingest() -> int:
        return 1

    @p.step
    def train(ingest: int) -> int:
        return ingest

    with pytest.raises(DefinitionError, match=r"'train' depends on 'ingest'.*did you mean 'Ingest'"):
        p.validate()


def test_duplicate_step_names_are_rejected() -> None:
    p = Pipeline("dup")
    p.add(_noop, name="a")
    with pytest.raises(DefinitionError, match="already has a step named 'a'"):
        p.add(_noop, name="a")


def test_inputs_must_name_real_parameters() -> None:
    p = Pipeline("bad")
    with pytest.raises(DefinitionError, match="'y', which is not a parameter"):
        p.add(_noop, name="a", inputs={"y": "z"})


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"backoff": -1}, {"multiplier": 0.5}])
def test_impossible_retry_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(DefinitionError):
        Retry(**kwargs)  # type: ignore[arg-type]


def test_timeout_must_be_positive() -> None:
    with pytest.raises(DefinitionError, match="timeout=0"):
        Pipeline("t").add(_noop, timeout=0)


def test_empty_pipeline_and_bad_name() -> None:
    with pytest.raises(DefinitionError, match="no steps"):
        Pipeline("empty").validate()
    with pytest.raises(DefinitionError, match="must be 1-100 ASCII letters"):
        Pipeline("has space")


def test_backoff_is_exponential_capped_and_jittered() -> None:
    import random

    r = Retry(attempts=10, backoff=1, multiplier=2, max_backoff=5, jitter=0)
    assert [r.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    j = Retry(attempts=3, backoff=1, jitter=0.5)
    delays = {j.delay(1, random.Random(s)) for s in range(20)}
    assert len(delays) > 10 and all(0.5 <= d <= 1.5 for d in delays)


def test_retry_predicate_and_contract_violations_never_retry() -> None:
    from reliability.errors import ContractViolation

    r = Retry(attempts=3, retry_on=lambda e: "transient" in str(e))
    assert r.should_retry(RuntimeError("transient glitch"))
    assert not r.should_retry(RuntimeError("bad config"))
    assert not Retry(attempts=3).should_retry(ContractViolation("x"))


def test_data_interval_validation() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    iv = DataInterval(start, start + dt.timedelta(days=1))
    assert DataInterval.parse(iv.key()) == iv
    with pytest.raises(DefinitionError, match="time-zone aware"):
        DataInterval(dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))
    with pytest.raises(DefinitionError, match="must be after start"):
        DataInterval(start, start)
    with pytest.raises(DefinitionError, match="START/END"):
        DataInterval.parse("yesterday")


def test_load_pipeline_reference_errors() -> None:
    with pytest.raises(DefinitionError, match="module:attribute"):
        load_pipeline("nocolon")
    with pytest.raises(DefinitionError, match="cannot import"):
        load_pipeline("no_such_module_xyz:pipe")
    with pytest.raises(DefinitionError, match="not a Pipeline"):
        load_pipeline("sample_pipelines:ChainParams")
    with pytest.raises(DefinitionError, match=r"has no 'chian'.*Fix: name one of its "
                                              r"pipelines \(.*chain"):
        load_pipeline("sample_pipelines:chian")
    assert load_pipeline("sample_pipelines:chain").name == "chain"


def test_params_are_validated() -> None:
    from sample_pipelines import chain

    with pytest.raises(DefinitionError, match="parameter rows"):
        chain.make_params({"rows": "many"})
    with pytest.raises(DefinitionError, match="declares no parameters"):
        Pipeline("np").make_params({"a": 1})


def test_step_staging_dir_is_made_on_first_use(tmp_path: Path) -> None:
    from reliability import StepContext

    where = tmp_path / "staging" / "r" / "s.1.d"
    ctx = StepContext("p", "r", "s", 1, None, where)
    assert not where.exists() and not ctx._staging_ready  # untouched: no filesystem work
    assert ctx.staging_dir == where and where.is_dir()
    assert "attempt=1" in repr(ctx)
