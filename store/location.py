"""Where the index lives: a local folder (the default, ``<data_dir>/lancedb``) or an object
store prefix (``s3://bucket/prefix``).

An :class:`IndexLocation` is what every store class is given. It opens LanceDB connections
with the right storage options, hands out the whole-file storage the registry, the index's
``enclave-index.json`` and the writer lock use (:class:`store.files.LocalFiles` on disk,
:class:`S3Files` on S3), and names the *local side* folder: files that stay on the host that
writes them (the gate's reports). For a local index that folder is the index folder itself.

On S3 the tables, the registry (records, ``live.json``, ``head.json``, tags) and the index's
meta file live under the prefix; keys, the audit log, usage and ingest snapshots stay in
``data_dir`` on each host. Credentials come from the usual AWS sources (environment
variables, ``~/.aws`` profiles, instance roles); the endpoint, region and whether plain HTTP
is allowed from ``[store]`` settings or ``AWS_ENDPOINT_URL`` / ``AWS_REGION``. Plain HTTP is
allowed for a loopback endpoint (a local S3-compatible server) and refused elsewhere unless
``store.s3_allow_http`` says so.

``boto3`` (the ``enclave-rag[s3]`` extra) is imported only for an ``s3://`` location.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from enclave.errors import ConfigError

S3_SCHEMES = ("s3",)
_BUCKET_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible store (settings ``[store]``; None: the AWS default)."""

    endpoint: str | None = None
    region: str | None = None
    allow_http: bool = False
    #: the writer lock's lease on S3 (store/lock.py)
    lease_s: float = 60.0
    #: extra LanceDB storage options, as (key, value) pairs
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class IndexLocation:
    """The index's location: ``uri`` is an absolute local path or ``s3://bucket/prefix``."""

    uri: str
    #: host-local folder for files that stay on this host (the gate's reports)
    local_root: Path
    s3: S3Options = field(default_factory=S3Options)

    # ------------------------------------------------------------------ shape
    @property
    def is_remote(self) -> bool:
        return "://" in self.uri

    @property
    def local_path(self) -> Path:
        """The index folder of a local index (a remote one has none)."""
        if self.is_remote:
            raise ConfigError(f"the index at {self.uri} is not a local folder")
        return Path(self.uri)

    @property
    def bucket(self) -> str:
        return urlparse(self.uri).netloc

    @property
    def prefix(self) -> str:
        return urlparse(self.uri).path.strip("/")

    def key(self, name: str) -> str:
        """The object key of ``name`` ('/'-separated, relative to the index)."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return self.uri

    def child(self, name: str) -> IndexLocation:
        """The location of folder ``name`` ('/'-separated) under this one, e.g. a table
        set's (store/sets.py): same store and options, its own host-local side folder."""
        name = name.strip("/")
        uri = f"{self.uri.rstrip('/')}/{name}" if self.is_remote else str(Path(self.uri) / name)
        return IndexLocation(uri, local_root=self.local_root / name, s3=self.s3)

    # ------------------------------------------------------------ connections
    def storage_options(self) -> dict[str, str]:
        """LanceDB's ``storage_options`` for this location (empty for a local one)."""
        if not self.is_remote:
            return {}
        opts: dict[str, str] = {"aws_region": self.region()}
        endpoint = self.endpoint()
        if endpoint:
            opts["aws_endpoint"] = endpoint
            if endpoint.startswith("http://"):
                opts["allow_http"] = "true"
        creds = _static_credentials()
        if creds:
            opts.update(creds)
        opts.update(dict(self.s3.options))
        return opts

    def endpoint(self) -> str | None:
        return (
            self.s3.endpoint
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )

    def region(self) -> str:
        return (
            self.s3.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )

    def connect(self, read_consistency: timedelta = timedelta(0)) -> Any:
        """A LanceDB connection to the index."""
        import lancedb

        if not self.is_remote:
            self.local_path.mkdir(parents=True, exist_ok=True)
            return lancedb.connect(self.uri, read_consistency_interval=read_consistency)
        return lancedb.connect(
            self.uri,
            read_consistency_interval=read_consistency,
            storage_options=self.storage_options(),
        )

    def files(self, folder: str = "") -> Any:
        """Whole-file storage under ``folder`` of the index (a ``RegistryFiles``)."""
        from store.files import LocalFiles

        if not self.is_remote:
            return LocalFiles(self.local_path / folder if folder else self.local_path)
        self.check()  # a missing bucket or refused credentials: a clear error, once
        return S3Files(self, folder, self.local_root / folder if folder else self.local_root)

    def client(self, *, retries: int = 3) -> Any:
        """The boto3 S3 client of a remote location (one per endpoint, region and number of
        attempts, per process)."""
        return _client(self.endpoint(), self.region(), retries)

    def check(self) -> None:
        """Fail early and clearly: the bucket answers and the credentials are accepted."""
        if not self.is_remote or self.uri in _CHECKED:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                raise ConfigError(
                    f"store.uri {self.uri}: bucket {self.bucket!r} does not exist"
                ) from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise ConfigError(
                    f"store.uri {self.uri}: access to bucket {self.bucket!r} denied ({code}); "
                    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile in use"
                ) from None
            raise ConfigError(f"store.uri {self.uri}: the bucket answered {code}") from None
        except BotoCoreError as exc:
            raise ConfigError(
                f"store.uri {self.uri}: cannot reach the object store at "
                f"{self.endpoint() or 'the AWS endpoint'}: {exc}"
            ) from None
        _CHECKED.add(self.uri)

    def size_bytes(self) -> int:
        """Bytes stored under the index."""
        if not self.is_remote:
            return sum(f.stat().st_size for f in self.local_path.rglob("*") if f.is_file())
        total = 0
        pages = self.client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.key("")):
            total += sum(int(o["Size"]) for o in page.get("Contents", []))
        return total


_CLIENTS: dict[tuple[str | None, str, int], Any] = {}
#: remote locations whose bucket answered in this process
_CHECKED: set[str] = set()


def _client(endpoint: str | None, region: str, retries: int) -> Any:
    key = (endpoint, region, retries)
    if key not in _CLIENTS:
        import boto3
        from botocore.config import Config

        _CLIENTS[key] = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            config=Config(
                retries={"max_attempts": retries, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        )
    return _CLIENTS[key]


def _static_credentials() -> dict[str, str]:
    """Keys from a profile file, which LanceDB's object store does not read itself (the
    environment and instance roles it resolves alone, refreshing them as they expire)."""
    import boto3

    creds = boto3.session.Session().get_credentials()
    if creds is None or getattr(creds, "method", "") not in ("shared-credentials-file", "config"):
        return {}
    frozen = creds.get_frozen_credentials()
    out = {"aws_access_key_id": frozen.access_key, "aws_secret_access_key": frozen.secret_key}
    if frozen.token:
        out["aws_session_token"] = frozen.token
    return out


def locate(where: IndexLocation | Path | str) -> IndexLocation:
    """An :class:`IndexLocation` from a location, a local folder or a URI (S3 options from
    the environment)."""
    if isinstance(where, IndexLocation):
        return where
    text = str(where)
    if "://" in text:
        return parse_uri(text, local_root=Path("."))
    path = Path(text).absolute()
    return IndexLocation(str(path), local_root=path)


def parse_uri(uri: str, *, local_root: Path, s3: S3Options | None = None) -> IndexLocation:
    """Validate ``uri`` (a local path or ``s3://bucket[/prefix]``); ConfigError says why not."""
    text = uri.strip()
    if "://" not in text:
        path = Path(text).expanduser().absolute()
        return IndexLocation(str(path), local_root=path)
    parsed = urlparse(text)
    if parsed.scheme not in S3_SCHEMES:
        raise ConfigError(
            f"store.uri {uri!r}: unsupported scheme {parsed.scheme!r}; use a local path or "
            "s3://bucket/prefix"
        )
    bucket = parsed.netloc
    if not (3 <= len(bucket) <= 63) or not set(bucket) <= _BUCKET_CHARS:
        raise ConfigError(f"store.uri {uri!r}: {bucket!r} is not a valid S3 bucket name")
    if parsed.query or parsed.fragment or parsed.params:
        raise ConfigError(f"store.uri {uri!r}: no query or fragment allowed")
    options = s3 or S3Options()
    location = IndexLocation(
        f"s3://{bucket}/{parsed.path.strip('/')}".rstrip("/"), local_root=local_root, s3=options
    )
    _check_client_side(location)
    return location


def _check_client_side(location: IndexLocation) -> None:
    try:
        import boto3
    except ImportError:
        raise ConfigError(
            f"store.uri {location.uri} needs the S3 client: pip install 'enclave-rag[s3]'"
        ) from None
    endpoint = location.endpoint()
    if endpoint:
        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"store.s3_endpoint {endpoint!r} is not an http(s) URL")
        if parsed.scheme == "http" and not (location.s3.allow_http or _loopback(parsed.hostname)):
            raise ConfigError(
                f"store.s3_endpoint {endpoint} is plain HTTP on a host that is not loopback; "
                "use https, or set store.s3_allow_http = true if the network is trusted"
            )
    if boto3.session.Session().get_credentials() is None:
        raise ConfigError(
            f"store.uri {location.uri}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run on a host with an instance role)"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class S3Files:
    """The registry's whole-file storage on S3. A PUT replaces an object atomically and S3
    reads are strongly consistent, so a reader sees the old or the new file, never a mix."""

    def __init__(self, location: IndexLocation, folder: str, local_root: Path) -> None:
        self.location = location
        self.folder = folder.strip("/")
        self.local_root = local_root

    def _key(self, name: str) -> str:
        return self.location.key(f"{self.folder}/{name}" if self.folder else name)

    @property
    def client(self) -> Any:
        return self.location.client()

    @property
    def bucket(self) -> str:
        return self.location.bucket

    def read(self, name: str) -> bytes | None:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(name))
        except self.client.exceptions.NoSuchKey:
            return None
        data: bytes = resp["Body"].read()
        return data

    def write(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def list(self, folder: str) -> list[str]:
        prefix = self._key(folder).rstrip("/") + "/"
        names: list[str] = []
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            names.extend(o["Key"][len(prefix) :] for o in page.get("Contents", []))
        return sorted(names)

    def stamp(self, name: str) -> tuple[int, int, int] | None:
        """(ETag digest, size, last-modified ns): changes whenever the object is replaced."""
        from botocore.exceptions import ClientError

        try:  # one attempt: a server looks again half a second later anyway
            head = self.location.client(retries=1).head_object(
                Bucket=self.bucket, Key=self._key(name)
            )
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
                return None
            raise
        etag = str(head.get("ETag", "")).strip('"')
        digest = int(etag[:15], 16) if etag[:15] and _hex(etag[:15]) else hash(etag)
        modified: datetime = head["LastModified"]
        return (digest, int(head["ContentLength"]), int(modified.timestamp() * 1e9))

    def local_dir(self, name: str, *, create: bool = True) -> Path:
        """Files other code writes stay on this host (the gate's reports)."""
        path = self.local_root / name
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path


def _hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def describe(location: IndexLocation) -> Mapping[str, Any]:
    """What ``enclave status`` says about the location."""
    out: dict[str, Any] = {"uri": location.uri}
    if location.is_remote:
        out["endpoint"] = location.endpoint() or "AWS"
        out["region"] = location.region()
    return out
