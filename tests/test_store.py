"""The object store: the same behaviour on a folder and on S3 (real boto3 against moto's server)."""

import socket
import threading
import time
import urllib.request

import boto3
import pytest
from moto.core import enable_iam_authentication

from farm.exceptions import ConflictError, StoreError
from farm.storage.store import S3_CONNECT_TIMEOUT_SECONDS, S3_MAX_ATTEMPTS, S3_READ_TIMEOUT_SECONDS, S3Store, \
    open_store
from tests.fault_proxy import FaultProxy


def test_objects_round_trip_and_list_by_prefix(any_store):
    etag = any_store.put("pools/a/images/x.png", b"png", content_type="image/png")
    any_store.put("pools/a/keys/00000.jsonl", b"{}\n")
    any_store.put("pools/b/manifest.json", b"{}")
    assert any_store.get("pools/a/images/x.png") == b"png"
    assert any_store.etag("pools/a/images/x.png") == etag
    assert any_store.get_with_etag("pools/a/images/x.png") == (b"png", etag)
    assert any_store.list("pools/a/") == ["pools/a/images/x.png", "pools/a/keys/00000.jsonl"]
    assert any_store.list_dirs("pools") == ["a", "b"]
    assert any_store.list("nothing/") == [] and any_store.list_dirs("nothing") == []
    with pytest.raises(KeyError):
        any_store.get("pools/a/images/missing.png")
    assert any_store.etag("pools/a/images/missing.png") is None
    any_store.delete("pools/a/images/x.png")
    any_store.delete("pools/a/images/x.png")  # absent is fine
    assert not any_store.exists("pools/a/images/x.png")


def test_conditional_create_lets_only_the_first_writer_in(any_store):
    any_store.put("checkpoints/CURRENT", b"one", if_none_match=True)
    with pytest.raises(ConflictError):
        any_store.put("checkpoints/CURRENT", b"two", if_none_match=True)
    assert any_store.get("checkpoints/CURRENT") == b"one"


def test_conditional_replace_needs_the_version_it_read(any_store):
    old = any_store.put("checkpoints/CURRENT", b"one")
    new = any_store.put("checkpoints/CURRENT", b"two", if_match=old)
    with pytest.raises(ConflictError):
        any_store.put("checkpoints/CURRENT", b"three", if_match=old)  # somebody else's write came between
    assert any_store.get("checkpoints/CURRENT") == b"two" and any_store.etag("checkpoints/CURRENT") == new
    with pytest.raises(ConflictError):
        any_store.put("checkpoints/GONE", b"x", if_match=old)  # the object was deleted meanwhile


def test_concurrent_conditional_creates_have_exactly_one_winner(any_store):
    # moto checks the condition and writes in two steps without a lock (real S3 and LocalStore are
    # atomic), so this exercises the common race, not a guarantee of moto's.
    stores = [open_store(any_store.url) for _ in range(6)]
    for round_ in range(5):
        barrier, wins, conflicts = threading.Barrier(len(stores)), [], []

        def write(i, store, barrier=barrier, key=f"race/{round_}", wins=wins, conflicts=conflicts):
            barrier.wait()
            try:
                store.put(key, b"writer %d" % i, if_none_match=True)
                wins.append(i)
            except ConflictError:
                conflicts.append(i)

        threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(stores)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(wins) == 1 and len(conflicts) == len(stores) - 1
        assert any_store.get(f"race/{round_}") == b"writer %d" % wins[0]


def test_open_store_reads_s3_urls_and_refuses_others(s3_store, bucket):
    assert isinstance(s3_store, S3Store) and (s3_store.bucket, s3_store.prefix) == (bucket, "farm")
    s3_store.put("a/b", b"x")
    assert boto3.client("s3").get_object(Bucket=bucket, Key="farm/a/b")["Body"].read() == b"x"
    for url in ("s3://", "s3:///prefix", "ftp://host/x"):
        with pytest.raises(ValueError, match="store:"):
            open_store(url)


def test_a_missing_bucket_is_a_clear_error(s3_env):
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-here' does not exist; create it"):
        open_store("s3://no-such-bucket-here/farm")


def test_wrong_credentials_are_a_clear_error_without_the_secret(bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    # moto accepts any key unless told to check them
    with enable_iam_authentication(), pytest.raises(StoreError, match="denied.*AWS_ACCESS_KEY_ID") as error:
        open_store(f"s3://{bucket}/farm")
    assert "very-secret-value" not in str(error.value) and "very-secret-value" not in repr(error.value.__cause__)


def test_missing_credentials_are_a_clear_error(bucket, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # do not wait for an instance role
    with pytest.raises(StoreError, match="no AWS credentials"):
        open_store(f"s3://{bucket}/farm")


def test_an_unreachable_endpoint_is_a_clear_error_within_seconds(s3_env, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot reach the endpoint.*AWS_ENDPOINT_URL"):
        open_store("s3://any-bucket/farm")
    assert time.monotonic() - started < 15  # a hang guard: botocore's defaults took ~40 s


def test_the_s3_client_waits_a_bounded_time(s3_store):
    config = s3_store.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (S3_CONNECT_TIMEOUT_SECONDS, S3_READ_TIMEOUT_SECONDS)
    assert config.retries == {"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS}


def test_transient_failures_are_retried_by_botocore(bucket, monkeypatch, s3_env):
    failing = S3_MAX_ATTEMPTS - 1
    with FaultProxy(s3_env, fail_first=failing) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        store = open_store(f"s3://{bucket}/farm")  # its first requests but the last attempt answer 503
        store.put("k", b"v", if_none_match=True)
        assert store.get("k") == b"v"
    assert proxy.failed == failing and proxy.requests == failing + 3  # head_bucket to success, then put and get


def test_persistent_failure_gives_up_after_the_default_attempts(bucket, monkeypatch, s3_env):
    with FaultProxy(s3_env, fail_first=10**6) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(StoreError, match="ServiceUnavailable|503"):
            open_store(f"s3://{bucket}/farm")
    assert proxy.requests == S3_MAX_ATTEMPTS


def test_persistent_failure_gives_up_after_the_configured_attempts(bucket, monkeypatch, s3_env):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # the standard variable overrides S3_MAX_ATTEMPTS
    with FaultProxy(s3_env, fail_first=10**6) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(StoreError, match="ServiceUnavailable|503"):
            open_store(f"s3://{bucket}/farm")
    assert proxy.requests == 2  # attempts in all, as AWS_MAX_ATTEMPTS means everywhere


def test_s3_requests_carry_no_default_checksums_and_use_path_style(bucket, monkeypatch, s3_env):
    with FaultProxy(s3_env) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        store = open_store(f"s3://{bucket}/farm")
        store.put("k", b"v" * 1000)
        store.get("k")
    put = [h for method, path, h in proxy.headers if method == "PUT"]
    assert put and all(path.startswith(f"/{bucket}") for _, path, _ in proxy.headers)
    for headers in put:
        names = {k.lower() for k in headers}
        assert not any(n.startswith("x-amz-checksum") or n == "x-amz-sdk-checksum-algorithm" for n in names), names
        assert "aws-chunked" not in headers.get("Content-Encoding", "")


def test_a_presigned_link_serves_the_object(s3_store):
    s3_store.put("pools/p/images/a.png", b"\x89PNG...", content_type="image/png")
    url = s3_store.link("pools/p/images/a.png", expires=60)
    assert "Signature" in url or "X-Amz-Signature" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"\x89PNG..."
