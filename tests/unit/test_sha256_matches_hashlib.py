"""Our SHA-256 (the built-in one for small inputs, OpenSSL's past ``SMALL`` bytes) gives
``hashlib``'s digest for every input and every way of feeding it: the store names objects
by it, so one wrong digest would be a corrupt object nobody can find."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reliability import _sha
from reliability._sha import sha256

chunks = st.lists(st.binary(max_size=64), max_size=12)


@given(parts=chunks, small=st.integers(0, 200), kind=st.sampled_from(["bytes", "view", "array"]))
@settings(max_examples=300)
def test_every_feeding_of_every_input_hashes_as_hashlib_does(
        parts: list[bytes], small: int, kind: str) -> None:
    real = _sha.SMALL
    _sha.SMALL = small  # cross the switch to OpenSSL anywhere
    try:
        ours, reference = sha256(), hashlib.sha256()
        for part in parts:
            buffer = bytearray(part)
            data: bytes | bytearray | memoryview = (
                bytes(buffer) if kind == "bytes" else memoryview(buffer) if kind == "view"
                else buffer)
            ours.update(data)
            reference.update(part)
            buffer[:] = b"\0" * len(buffer)  # a caller that reuses its buffer afterwards
        assert ours.hexdigest() == reference.hexdigest()
        assert ours.digest() == reference.digest()
    finally:
        _sha.SMALL = real


@pytest.mark.parametrize("sizes", [[_sha.SMALL], [_sha.SMALL + 1], [_sha.SMALL - 1, 2],
                                   [3, _sha.SMALL * 3], [0, 0, 5]])
def test_inputs_around_the_real_threshold_hash_as_hashlib_does(sizes: list[int]) -> None:
    ours, reference = sha256(), hashlib.sha256()
    for n in sizes:
        data = os.urandom(n)
        ours.update(data)
        reference.update(data)
    assert ours.hexdigest() == reference.hexdigest()
    assert sha256(b"abc").hexdigest() == hashlib.sha256(b"abc").hexdigest()


def test_small_inputs_leave_openssl_unloaded_and_large_ones_use_it() -> None:
    code = ("import sys\n"
            "from reliability._sha import sha256\n"
            "sha256(b'x' * 1000).hexdigest()\n"
            "small = '_hashlib' in sys.modules\n"
            "sha256(b'x' * (2 << 20)).hexdigest()\n"
            "print(small, '_hashlib' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.split() == ["False", "True"]
