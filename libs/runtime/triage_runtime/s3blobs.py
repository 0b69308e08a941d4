"""S3-compatible blob storage, and a factory that picks the blob store from a URL.

``S3BlobStore`` keeps blobs under the same content-addressed layout as ``LocalBlobStore``:
``<prefix>sha256/ab/cd/<hex>``. It works with AWS S3 and with S3-compatible servers
(S3Proxy, MinIO, Ceph RGW, ...) reached through ``endpoint_url``.

Services configure their blob store from these environment variables:

``TRIAGE_BLOB_URL``
    Where blobs live: ``file:///abs/path`` or a plain path for a local directory,
    ``s3://bucket/prefix`` for an S3 bucket (no prefix means ``blobs/``).
``TRIAGE_S3_ENDPOINT_URL``
    Endpoint of an S3-compatible server, e.g. ``http://127.0.0.1:19000``; unset means AWS.
``TRIAGE_S3_REGION``
    Signing region, e.g. ``us-east-1``; unset means boto3's own lookup (AWS_REGION,
    AWS_DEFAULT_REGION, config files), which S3 treats as ``us-east-1``.
``TRIAGE_S3_ACCESS_KEY_ID`` and ``TRIAGE_S3_SECRET_ACCESS_KEY``
    Static credentials, both or neither (empty counts as unset). The secret may be passed
    as a pydantic ``SecretStr`` or a plain ``str``. When neither is set, boto3's default
    chain is used (AWS_* variables, shared config files, instance or task roles).

These names are read by the services' settings and passed to ``blob_store_from_url``;
this module reads no environment variables itself. S3 options are ignored for local URLs,
so settings can pass them whatever the URL. ``S3BlobStore`` makes blocking calls, like
``LocalBlobStore``, and may be shared between threads (boto3 clients are thread-safe).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from triage_runtime.blobstore import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobStore,
    ListedBlob,
    LocalBlobStore,
    file_sha256,
    is_sha256,
)

DEFAULT_PREFIX = "blobs/"
METADATA_KEY = "sha256"
MIB = 1024 * 1024
# Error codes S3 and compatible servers use for a missing object (HEAD only has the status).
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET_CODES = frozenset({"404", "NoSuchBucket", "NotFound"})

AddressingStyle = Literal["auto", "path", "virtual"]


class S3Options(TypedDict, total=False):
    """Keyword options of ``blob_store_from_url`` that configure an ``S3BlobStore``."""

    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: SecretStr | str | None
    create_bucket: bool
    addressing_style: AddressingStyle | None
    multipart_threshold: int
    multipart_chunksize: int
    max_concurrency: int


def _check_sha256(sha256: str) -> str:
    if not is_sha256(sha256):
        raise ValueError("not a SHA-256 hex digest")
    return sha256


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix


def _error_code(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    if code:
        return str(code)
    return str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _extra_args(sha256: str) -> dict[str, Any]:
    return {"ContentType": "application/octet-stream", "Metadata": {METADATA_KEY: sha256}}


class S3BlobStore:
    """A blob store in an S3 bucket; objects carry their SHA-256 as metadata and are verified."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = DEFAULT_PREFIX,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: SecretStr | str | None = None,
        create_bucket: bool = False,
        addressing_style: AddressingStyle | None = None,
        multipart_threshold: int = 8 * MIB,
        multipart_chunksize: int = 8 * MIB,
        max_concurrency: int = 4,
    ) -> None:
        """Connect to ``bucket``; ``secret_access_key`` may be a SecretStr or a plain str."""
        # boto3 and botocore ship no type information: the client is an Any boundary,
        # kept inside this class. They are imported here so importing the module stays cheap.
        import boto3  # type: ignore[import-untyped,unused-ignore]
        from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped,unused-ignore]
        from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]
        from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

        if not bucket:
            raise ValueError("bucket must not be empty")
        if multipart_chunksize < 5 * MIB:
            raise ValueError("multipart_chunksize must be at least 5 MiB (the S3 minimum part)")
        # Empty values count as unset, as an empty environment variable would.
        key_id = access_key_id or None
        secret = (
            secret_access_key.get_secret_value()
            if isinstance(secret_access_key, SecretStr)
            else secret_access_key
        ) or None
        if (key_id is None) != (secret is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        # Custom endpoints (S3Proxy, MinIO, ...) rarely resolve bucket subdomains: path style.
        style = addressing_style or ("path" if endpoint_url else "auto")
        config = Config(
            s3={"addressing_style": style},
            retries={"mode": "standard", "max_attempts": 5},
            # Only the checksums S3 requires: many S3-compatible servers reject the newer
            # default trailing checksums. Integrity is covered by SigV4's payload hash on
            # upload and by the SHA-256 check in get().
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=max(10, max_concurrency),
        )
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=config,
        )
        self._client_error: type[Exception] = ClientError
        self._transfer_config: Any = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
        )
        self._multipart_threshold = multipart_threshold
        self._bucket = bucket
        self._prefix = _normalise_prefix(prefix)
        self._endpoint_url = endpoint_url
        if create_bucket:
            self._ensure_bucket(region)

    def __repr__(self) -> str:
        """Show where blobs go, never the credentials."""
        where = self._endpoint_url or "AWS"
        return f"S3BlobStore(bucket={self._bucket!r}, prefix={self._prefix!r}, endpoint={where!r})"

    @property
    def bucket(self) -> str:
        """The bucket holding the blobs."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix, empty or ending with a slash."""
        return self._prefix

    @property
    def client(self) -> Any:
        """The underlying boto3 S3 client, for administration and tests."""
        return self._client

    def key(self, sha256: str) -> str:
        """Return the object key of ``sha256``: ``<prefix>sha256/ab/cd/<hex>``."""
        _check_sha256(sha256)
        return f"{self._prefix}sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def _ensure_bucket(self, region: str | None) -> None:
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except self._client_error as exc:
            if _error_code(exc) not in _NO_BUCKET_CODES:
                raise
        else:
            return
        kwargs: dict[str, Any] = {"Bucket": self._bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(**kwargs)
        except self._client_error as exc:
            # Another process may have created it in between.
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    def _head(self, sha256: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._client.head_object(
                Bucket=self._bucket, Key=self.key(sha256)
            )
        except self._client_error as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return None
            raise
        return head

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its SHA-256 in hex; storing the same bytes twice is a no-op."""
        digest = hashlib.sha256(data).hexdigest()
        if self._head(digest) is not None:
            return digest
        extra = _extra_args(digest)
        if len(data) <= self._multipart_threshold:
            self._client.put_object(Bucket=self._bucket, Key=self.key(digest), Body=data, **extra)
        else:
            # Large payloads go in parts, like put_file: single PUTs are capped (5 GiB on
            # AWS, often far less on S3-compatible servers that buffer them to check SigV4).
            self._client.upload_fileobj(
                io.BytesIO(data),
                self._bucket,
                self.key(digest),
                ExtraArgs=extra,
                Config=self._transfer_config,
            )
        return digest

    def put_file(self, path: Path) -> str:
        """Store a file's bytes, reading it in chunks; return their SHA-256 in hex."""
        before = path.stat()
        digest = file_sha256(path)
        if self._head(digest) is not None:
            return digest
        key = self.key(digest)
        # Streams the file from disk, in parts above multipart_threshold.
        self._client.upload_file(
            os.fspath(path),
            self._bucket,
            key,
            ExtraArgs=_extra_args(digest),
            Config=self._transfer_config,
        )
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            # The bytes uploaded may not be the bytes hashed: never leave them under this key.
            self._client.delete_object(Bucket=self._bucket, Key=key)
            raise BlobIntegrityError(f"{path} changed while it was being stored")
        return digest

    def get(self, sha256: str) -> bytes:
        """Return the bytes stored under ``sha256`` or raise BlobNotFoundError."""
        key = self.key(sha256)
        try:
            response: dict[str, Any] = self._client.get_object(Bucket=self._bucket, Key=key)
        except self._client_error as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise BlobNotFoundError(sha256) from exc
            raise
        body = response["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        recorded = response.get("Metadata", {}).get(METADATA_KEY)
        if recorded is not None and recorded != sha256:
            raise BlobIntegrityError(
                f"s3://{self._bucket}/{key} is recorded with SHA-256 {recorded}, not its key's"
            )
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise BlobIntegrityError(f"s3://{self._bucket}/{key} holds bytes with SHA-256 {actual}")
        return data

    def exists(self, sha256: str) -> bool:
        """Say whether a blob is stored under ``sha256``."""
        return self._head(sha256) is not None

    def delete(self, sha256: str) -> bool:
        """Remove the blob under ``sha256`` (retention); return whether one was there."""
        if self._head(sha256) is None:
            return False
        self._client.delete_object(Bucket=self._bucket, Key=self.key(sha256))
        return True

    def list_blobs(self) -> Iterator[ListedBlob]:
        """Every stored blob, page by page, in key order (the orphan sweep reads it)."""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=f"{self._prefix}sha256/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                name = str(obj["Key"]).rsplit("/", 1)[-1]
                if is_sha256(name):
                    yield ListedBlob(name, obj["LastModified"])


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where a store URL points: a local directory, or a bucket and key prefix."""

    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""


def parse_store_url(url: str) -> StoreLocation:
    """Parse ``file:///abs/path``, a plain path, or ``s3://bucket/prefix``; ValueError otherwise."""
    if not url:
        raise ValueError("store URL is empty")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    # A plain path (relative or absolute) is a local directory; S3 options do not apply.
    if not scheme:
        return StoreLocation(path=Path(url))
    if scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            raise ValueError(f"file URL must name a local absolute path, got {url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"file URL must have no query or fragment, got {url!r}")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"file URL must name an absolute path, got {url!r}")
        return StoreLocation(path=Path(path))
    if scheme == "s3":
        if not parts.netloc or "@" in parts.netloc or ":" in parts.netloc:
            raise ValueError(f"s3 URL must name a bucket, s3://bucket/prefix, got {url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"s3 URL must have no query or fragment, got {url!r}")
        return StoreLocation(bucket=parts.netloc, prefix=unquote(parts.path).lstrip("/"))
    raise ValueError(f"unsupported store URL scheme {parts.scheme!r} in {url!r}")


def blob_store_from_url(url: str, **options: Unpack[S3Options]) -> BlobStore:
    """Return the blob store ``url`` names: ``file:///abs/path``, a path, or ``s3://bucket/prefix``."""
    location = parse_store_url(url)
    if location.path is not None:
        return LocalBlobStore(location.path)
    assert location.bucket is not None
    return S3BlobStore(bucket=location.bucket, prefix=location.prefix or DEFAULT_PREFIX, **options)
