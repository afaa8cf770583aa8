"""A pickled output's bytes, and so its digest, depend on the value alone: not on whether two
equal strings in it are one object, which changes with the history of the process that
pickles it (a scikit-learn model trained in a process that had unpickled one before)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env

from reliability.runner.store import decode, encode


def _distinct(text: str) -> str:
    """An equal string that is another object."""
    copy = "".join(list(text))
    assert copy == text and copy is not text
    return copy


def test_equal_strings_give_one_digest_whether_or_not_they_are_one_object(
        tmp_path: Path) -> None:
    name = _distinct("alcohol")
    shared = [name, name, {name: (name, 1)}]
    apart = [name, _distinct(name), {_distinct(name): (_distinct(name), 1)}]
    d1, codec, size = encode(shared, tmp_path / "shared")
    d2, _, _ = encode(apart, tmp_path / "apart")
    assert codec == "pickle" and d1 == d2
    assert size == (tmp_path / "shared").stat().st_size
    assert decode(tmp_path / "apart", codec) == shared


def test_shared_mutable_objects_and_cycles_survive(tmp_path: Path) -> None:
    inner: list[object] = [1]
    cycle: list[object] = []
    cycle.append(cycle)
    value = (inner, inner, {"k": inner}, cycle)
    digest, codec, _ = encode(value, tmp_path / "out")
    back = decode(tmp_path / "out", codec)
    assert back[0] is back[1] is back[2]["k"] and back[3][0] is back[3]
    assert encode(value, tmp_path / "again")[0] == digest


_FIT = """
import pickle, sys
from pathlib import Path
import numpy as np
from sklearn.linear_model import LogisticRegression
from reliability.runner.store import encode

if sys.argv[1] != "-":  # first unpickle a model, as a notebook inspecting a past run does
    pickle.loads(Path(sys.argv[1]).read_bytes())
x = np.random.default_rng(7).random((60, 4))
model = LogisticRegression(random_state=7).fit(x, (x[:, 0] + x[:, 1] > 1).astype(int))
print(encode(model, sys.argv[2])[0])
"""


def test_a_model_trained_after_unpickling_one_has_the_digest_of_a_fresh_process(
        tmp_path: Path) -> None:
    pytest.importorskip("sklearn")

    def fit(first: str, out: Path) -> str:
        done = subprocess.run([sys.executable, "-c", _FIT, first, str(out)],
                              env=subprocess_env(), capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    fresh = fit("-", tmp_path / "fresh.pkl")
    after = fit(str(tmp_path / "fresh.pkl"), tmp_path / "after.pkl")
    assert after == fresh
    assert (tmp_path / "after.pkl").read_bytes() == (tmp_path / "fresh.pkl").read_bytes()


def test_a_large_array_is_pickled_in_band_and_loads_back(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    value = {"weights": np.arange(300_000, dtype="float64"),  # 2.4 MB, written without a copy
             "frozen": np.arange(20_000, dtype="int64").view()}
    value["frozen"].flags.writeable = False
    digest, codec, size = encode(value, tmp_path / "out")
    assert codec == "pickle" and size == (tmp_path / "out").stat().st_size > 2_400_000
    back = decode(tmp_path / "out", codec)
    assert np.array_equal(back["weights"], value["weights"])
    assert np.array_equal(back["frozen"], value["frozen"])
    assert encode(value, tmp_path / "again")[0] == digest


def test_empty_frames_and_arrays_are_pickled_and_load_back(tmp_path: Path) -> None:
    """Every empty buffer's bytes are one object (``b""``): each is still written in full."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"id": range(4), "x": np.arange(4) * 0.5, "kind": ["a", "b"] * 2,
                          "day": pd.date_range("2026-01-01", periods=4, freq="h", tz="UTC")})
    for i, value in enumerate([frame.iloc[0:0], frame.head(0).copy(),
                               [np.zeros(0), np.zeros(0, dtype="int8")]]):
        _, codec, _ = encode(value, tmp_path / str(i))
        back = decode(tmp_path / str(i), codec)
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(back, value)
        else:
            assert [a.dtype for a in back] == [a.dtype for a in value]
            assert all(len(a) == 0 for a in back)


def test_arrays_of_every_layout_load_back_equal(tmp_path: Path) -> None:
    import numpy as np

    frozen = np.arange(10.0)
    frozen.setflags(write=False)
    for i, value in enumerate([np.zeros(0), np.arange(3, dtype="int8"), frozen,
                               np.arange(100_000.0), np.arange(40_000.0).reshape(200, 200).T,
                               np.array(["a", "bc"])]):
        _, codec, _ = encode(value, tmp_path / str(i))
        back = decode(tmp_path / str(i), codec)
        assert back.dtype == value.dtype and back.shape == value.shape
        assert np.array_equal(back, value)


def test_a_shared_part_is_written_in_full_wherever_it_occurs(tmp_path: Path) -> None:
    """Whether two equal parts of a value are one object is not part of the value: shared
    or not, one digest; shared parts load as equal copies."""
    inner = {"rows": [1, 2, 3]}
    shared_digest, codec, _ = encode([inner, inner], tmp_path / "shared")
    copies_digest, _, _ = encode([inner, {"rows": [1, 2, 3]}], tmp_path / "copies")
    assert shared_digest == copies_digest
    back = decode(tmp_path / "shared", codec)
    assert back == [inner, inner] and back[0] is not back[1]


_DUMP = """
import sys
if sys.argv[1] == "dill":
    import dill  # noqa: F401 -- registers its savers in the standard Python pickler
import json
import pandas as pd
from reliability.runner.store import encode

frame = pd.DataFrame({"x": [0.5, 1.5, 2.5]}, index=pd.RangeIndex(0, 3))
value = {"frame": frame, "window": slice(1, 3), "parse": json.loads, "kind": int,
         "meta": {"rows": 3}}
print(encode(value, sys.argv[2])[0])
"""


def test_a_library_that_changes_the_standard_pickler_does_not_change_our_pickles(
        tmp_path: Path) -> None:
    """dill adds savers for slices, dicts, functions and types to the standard library's
    Python pickler when it is imported (Airflow imports it): our pickles keep their bytes
    and load without it."""
    digests = {}
    for who in ("plain", "dill"):
        done = subprocess.run([sys.executable, "-c", _DUMP, who, str(tmp_path / who)],
                              capture_output=True, text=True, timeout=120,
                              env=subprocess_env(), check=True)
        digests[who] = done.stdout.strip()
    assert digests["dill"] == digests["plain"]
    load = ("import pickle, sys; v = pickle.loads(open(sys.argv[1], 'rb').read()); "
            "assert 'dill' not in sys.modules; print(v['window'], v['kind'].__name__)")
    done = subprocess.run([sys.executable, "-c", load, str(tmp_path / "dill")],
                          capture_output=True, text=True, timeout=120, env=subprocess_env(),
                          check=True)
    assert done.stdout.split() == ["slice(1,", "3,", "None)", "int"]


def test_a_list_or_dict_that_contains_itself_is_pickled_with_its_cycle(tmp_path: Path) -> None:
    loop: list[object] = [1, "a"]
    loop.append(loop)
    table: dict[str, object] = {"n": 1}
    table["self"] = table
    for i, value in enumerate([loop, table]):
        _, codec, _ = encode(value, tmp_path / str(i))
        assert codec == "pickle"
        back = decode(tmp_path / str(i), codec)
        if isinstance(back, list):
            assert back[:2] == [1, "a"] and back[2] is back
        else:
            assert back["n"] == 1 and back["self"] is back
