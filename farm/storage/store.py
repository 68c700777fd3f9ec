"""The object store: one interface, a local folder or an S3 bucket prefix behind it.

Keys are '/'-separated paths under one root (see the storage layout in the design). Writes are
whole objects; conditional writes let the registry switch CURRENT safely: `if_none_match=True`
writes only when the key does not exist, `if_match=etag` only when it still has that version.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import urlparse

from farm.exceptions import ConflictError, SettingError, StoreError

__all__ = ["Store", "LocalStore", "S3Store", "open_store", "jsonl_records", "DEFAULT_STORE"]

log = logging.getLogger(__name__)
DEFAULT_STORE = "file://./farm-data"
# S3 waits, bounded: a caller (the service answering a user, a worker) learns that the store is away in
# seconds, not in the ~40 s of botocore's defaults (60 s reads, 8 attempts with waits of up to 20 s).
S3_CONNECT_TIMEOUT_SECONDS = 3  # a connect in a region takes milliseconds; 3 s outlasts one lost SYN (resent at 1 s)
S3_READ_TIMEOUT_SECONDS = 10  # silence on an open connection; S3 answers in milliseconds and large objects stream
S3_MAX_ATTEMPTS = 3  # standard mode waits up to 1 s, then 2 s: rides out a blip, tells an outage in ~3 s plus timeouts


class Store(ABC):
    """Whole-object storage under a root."""

    url: str

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; KeyError when it does not exist."""

    @abstractmethod
    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None,
            content_type: str = "application/octet-stream") -> str:
        """Write an object, returning its etag; ConflictError when a condition fails."""

    @abstractmethod
    def etag(self, key: str) -> str | None:
        """The current version tag of an object, None when it does not exist."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under a prefix, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object (absent is fine)."""

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and the version tag of exactly those bytes (for a later if_match)."""
        data = self.get(key)
        return data, hashlib.md5(data).hexdigest()

    @abstractmethod
    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the 'folders' directly under a prefix (pools/ -> pool names), sorted."""

    def exists(self, key: str) -> bool:
        return self.etag(key) is not None

    def link(self, key: str, expires: int = 3600) -> str:
        """Where a client can fetch the object (a presigned URL on S3, a file URL locally)."""
        return f"{self.url.rstrip('/')}/{key}"


class LocalStore(Store):
    """A folder. Writes go to a temporary file renamed into place, so readers never see half an object."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StoreError(f"key: {key!r} leaves the store root")
        return path

    def get(self, key):
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None

    def etag(self, key):
        try:
            return hashlib.md5(self._path(key).read_bytes()).hexdigest()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def put(self, key, data, *, if_none_match=False, if_match=None, content_type="application/octet-stream"):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        conditional = if_none_match or if_match is not None
        lock = open(self.root / ".lock", "a+") if conditional else None
        try:
            if lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # conditions are checked and acted on atomically
                current = self.etag(key)
                if if_none_match and current is not None:
                    raise ConflictError(f"{key} already exists")
                if if_match is not None and current != if_match:
                    raise ConflictError(f"{key} changed since it was read (etag {current} != {if_match})")
            fd, tmp = self._temporary(path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            if lock:
                fcntl.flock(lock, fcntl.LOCK_UN)
                lock.close()
        return hashlib.md5(data).hexdigest()

    @staticmethod
    def _temporary(folder: Path) -> tuple[int, str]:
        """A temporary file in `folder`, made again should a delete prune the folder in between."""
        for _ in range(3):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                return tempfile.mkstemp(dir=folder, prefix=".tmp-")
            except FileNotFoundError:
                continue
        raise StoreError(f"{folder}: removed again and again while writing into it")

    def list(self, prefix):
        base = self.root / prefix
        folder = base if base.is_dir() else base.parent
        if not folder.exists():
            return []
        keys = []
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-") and path.name != ".lock":
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def list_dirs(self, prefix):
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def delete(self, key):
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove the folders a delete left empty: a bucket has no empty folders, so list_dirs agrees on both."""
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:  # not empty, or pruned by another delete already
                return
            folder = folder.parent


class S3Store(Store):
    """A bucket prefix through boto3: endpoint, region and credentials from the standard AWS environment.

    The same code talks to AWS, MinIO and moto: only AWS_ENDPOINT_URL changes. With an endpoint set,
    keys are addressed path-style (bucket in the path), which every S3-compatible server accepts.
    Conditional puts need a server that enforces If-None-Match / If-Match: AWS S3 does, atomically;
    moto 5.2 honours both (412) but checks and writes without a lock, so its races are only likely safe.
    """

    def __init__(self, bucket: str, prefix: str = "", client=None):
        import boto3  # here, and botocore in the S3 methods: ~0.4 s to import that a local store never needs
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        custom_endpoint = bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
        # standard retry mode: exponential backoff with jitter on throttling, 5xx and dropped connections,
        # by botocore, S3_MAX_ATTEMPTS in all; the standard AWS_RETRY_MODE / AWS_MAX_ATTEMPTS override it.
        # Checksums only when required: S3-compatible servers (older MinIO, moto, Ceph) reject or
        # mishandle the CRC trailers boto3 >= 1.36 sends by default.
        attempts = os.environ.get("AWS_MAX_ATTEMPTS") or str(S3_MAX_ATTEMPTS)
        if not attempts.isdigit() or int(attempts) < 1:
            raise SettingError(f"AWS_MAX_ATTEMPTS: {attempts!r} is not a positive whole number")
        retries = {"mode": os.environ.get("AWS_RETRY_MODE") or "standard", "total_max_attempts": int(attempts)}
        config = Config(retries=retries,
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        connect_timeout=S3_CONNECT_TIMEOUT_SECONDS, read_timeout=S3_READ_TIMEOUT_SECONDS,
                        signature_version="s3v4",  # presigned URLs default to SigV2, which newer regions refuse
                        s3={"addressing_style": "path"} if custom_endpoint else None)
        try:
            # a session of its own reads the environment now (the default session caches the first
            # credentials it saw) and is safe to use from this store's threads
            self.client = client or boto3.session.Session().client("s3", config=config)
        except Exception as e:  # botocore raises several unrelated types for a bad environment
            raise StoreError(f"s3: cannot create a client ({e}); check AWS_DEFAULT_REGION and AWS_ENDPOINT_URL") from e
        self._check_bucket()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, e: Exception, key: str) -> StoreError:
        """A StoreError that says what to do; never includes credentials."""
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(e, NoCredentialsError):
            return StoreError("s3: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if not isinstance(e, ClientError):
            return StoreError(f"s3: {key or self.bucket}: cannot reach the endpoint ({e}); check AWS_ENDPOINT_URL "
                              f"and the network")
        code = e.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and not key):  # HEAD has no body: bare 404
            return StoreError(f"s3: bucket {self.bucket!r} does not exist; create it or fix FARM_STORE")
        if code in _DENIED:
            return StoreError(f"s3: access to bucket {self.bucket!r} denied ({code}); check AWS_ACCESS_KEY_ID / "
                              f"AWS_SECRET_ACCESS_KEY and the bucket policy")
        return StoreError(f"s3: {key or self.bucket}: {code or 'error'}: {e.response.get('Error', {}).get('Message', e)}")

    def _call(self, key: str, method: str, **kwargs):
        """One S3 call (retried by botocore), its failures turned into StoreError; KeyError when absent."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if key and code in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(key) from e
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise ConflictError(f"{key}: a conditional write lost to another writer ({code})") from e
            raise self._error(e, key) from e
        except BotoCoreError as e:
            raise self._error(e, key) from e

    def _check_bucket(self):
        self._call("", "head_bucket")

    def get(self, key):
        return self._call(key, "get_object", Key=self._key(key))["Body"].read()

    def get_with_etag(self, key):
        response = self._call(key, "get_object", Key=self._key(key))
        return response["Body"].read(), response["ETag"].strip('"')

    def etag(self, key):
        try:
            return self._call(key, "head_object", Key=self._key(key))["ETag"].strip('"')
        except KeyError:
            return None

    def put(self, key, data, *, if_none_match=False, if_match=None, content_type="application/octet-stream"):
        args = {"Key": self._key(key), "Body": data, "ContentType": content_type}
        if if_none_match:
            args["IfNoneMatch"] = "*"
        if if_match is not None:
            args["IfMatch"] = f'"{if_match}"'
        try:
            return self._call(key, "put_object", **args)["ETag"].strip('"')
        except KeyError as e:  # If-Match on an object deleted meanwhile: S3 answers 404
            raise ConflictError(f"{key}: was deleted since it was read") from e

    def _pages(self, prefix: str, **kwargs):
        """Pages of list_objects_v2 under a prefix; failures become StoreError."""
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        try:
            yield from paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix), **kwargs)
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, prefix) from e

    def list(self, prefix):
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(o["Key"][strip:] for page in self._pages(prefix) for o in page.get("Contents", []))

    def list_dirs(self, prefix):
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        return sorted(p["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                      for page in self._pages(prefix, Delimiter="/") for p in page.get("CommonPrefixes", []))

    def delete(self, key):
        try:
            self._call(key, "delete_object", Key=self._key(key))
        except KeyError:
            pass

    def link(self, key, expires=3600):
        """A presigned GET URL: platforms hand it to browsers, the bucket stays private."""
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                                                  ExpiresIn=expires)


_DENIED = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
           "AllAccessDisabled")


def jsonl_records(data: bytes) -> list[dict]:
    """The objects of a JSON-lines body (keys files, answer batches), blank lines skipped."""
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def open_store(url: str | None = None) -> Store:
    """A store from a URL: file:///path, file://./relative, a bare path, or s3://bucket/prefix."""
    url = url or os.environ.get("FARM_STORE") or DEFAULT_STORE
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise SettingError(f"store: {url!r} names no bucket; use s3://bucket/prefix")
        return S3Store(parsed.netloc, parsed.path)
    if parsed.scheme in ("file", ""):
        path = url[len("file://"):] if url.startswith("file://") else url
        return LocalStore(path)
    raise SettingError(f"store: unsupported URL {url!r}; use file:///path or s3://bucket/prefix")
