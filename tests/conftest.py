"""Shared fixtures: the bundled substitute, fresh stores, and a secret so ids are stable."""

from __future__ import annotations

import os

import pytest
import torch

from farm.storage import registry
from farm.core.checkpoint import load_solver
from farm.storage.store import LocalStore

# one thread a test process when xdist runs two (pyproject's addopts): two processes of two threads on
# 2 cores oversubscribe OpenMP; alone (-n 0), both cores
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session")
def substitute():
    weights, card = registry.bundled()
    return load_solver(weights, card)


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


@pytest.fixture(autouse=True, scope="session")
def _secret():
    """Set for the whole session, so module fixtures that render a pool again use it too (a test may change it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FARM_SECRET", "test-secret-not-for-production")
        yield


def farm_env(tmp_path, **extra) -> dict:
    """Environment for a `farm` subprocess writing into tmp_path."""
    env = {**os.environ, "FARM_STORE": f"file://{tmp_path / 'store'}", "FARM_SECRET": "test-secret-not-for-production"}
    env.update(extra)
    return env


# S3: real boto3 against moto's server on loopback, one server for the session, one bucket per test.

@pytest.fixture(scope="session")
def moto_endpoint():
    """http://127.0.0.1:<port> of a moto server running in a thread of the test process."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(monkeypatch, moto_endpoint, tmp_path):
    """The standard AWS environment pointed at moto, isolated from any real AWS configuration."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    return moto_endpoint


@pytest.fixture
def bucket(s3_env):
    """A fresh bucket name (created) on the moto server."""
    import uuid

    import boto3

    name = f"farm-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(bucket):
    from farm.storage.store import open_store

    return open_store(f"s3://{bucket}/farm")


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path):
    """Each store implementation in turn: behaviour users rely on must not depend on which."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return request.getfixturevalue("s3_store")
