"""A real S3-compatible server for tests: moto's threaded server on 127.0.0.1."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port


@contextmanager
def moto_s3() -> Iterator[dict[str, Any]]:
    """Start moto's S3 server on a free loopback port; yield fsspec storage options."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing",
               "secret": "testing", "client_kwargs": {"region_name": "us-east-1"}}
    finally:
        server.stop()


def new_bucket(options: dict[str, Any]) -> str:
    """Create a fresh bucket on the server; return its s3:// URL with a prefix."""
    import fsspec

    name = f"store-{uuid.uuid4().hex[:12]}"
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    fs.call_s3("create_bucket", Bucket=name)
    return f"s3://{name}/reliability"


def posix_or_s3(request: pytest.FixtureRequest, directory: Path, **options: Any) -> Any:
    """The store a ``params=["posix", "s3"]`` fixture asks for: a directory store at
    ``directory``, or a fresh bucket on the module's ``s3`` fixture server (``options`` go to
    the object store)."""
    from reliability.runner.store import ArtifactStore, ObjectStore

    if request.param == "posix":
        return ArtifactStore(directory)
    return ObjectStore(new_bucket(request.getfixturevalue("s3")),
                       request.getfixturevalue("s3"), **options)
