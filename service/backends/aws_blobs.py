"""The S3 blob store: novel texts and storyboards as objects in one bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from service.backends.aws_clients import aws_call, error_code
from service.errors import BackendError, BlobNotFound

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import ObjectIdentifierTypeDef

_MISSING = frozenset({"NoSuchKey", "404"})
"""Codes S3 uses for an absent key (``404`` when the response has no body to parse)."""
DELETE_BATCH = 1000
"""The most keys one DeleteObjects call takes."""


class S3BlobStore:
    """A :class:`~service.ports.BlobStore` on one S3 bucket."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store ``data`` under ``key``; S3 replaces whole objects atomically."""
        with aws_call(f"s3 PutObject {self.bucket}/{key}"):
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
            )

    async def get(self, key: str) -> bytes:
        """The object's bytes; :class:`BlobNotFound` if there is none."""
        with aws_call(f"s3 GetObject {self.bucket}/{key}"):
            try:
                response = await self._client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if error_code(exc) not in _MISSING:
                    raise
                raise BlobNotFound(key) from None
            # Reading inside the context releases the pooled connection even on failure.
            async with response["Body"] as body:
                return await body.read()

    async def delete(self, key: str) -> None:
        """Remove ``key``; S3 treats a missing key as deleted."""
        with aws_call(f"s3 DeleteObject {self.bucket}/{key}"):
            await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def list_keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``: ListObjectsV2, a thousand keys a call."""
        if not prefix:
            raise ValueError("an empty prefix would name every blob")
        keys: list[str] = []
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            with aws_call(f"s3 ListObjectsV2 {self.bucket}/{prefix}"):
                response = await self._client.list_objects_v2(**request)
            keys += [entry["Key"] for entry in response.get("Contents", [])]
            if not response.get("IsTruncated"):
                return keys
            request["ContinuationToken"] = response["NextContinuationToken"]

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``: DeleteObjects, a thousand at a time;
        :class:`BackendError` naming the first key S3 would not delete."""
        keys = await self.list_keys(prefix)
        for start in range(0, len(keys), DELETE_BATCH):
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": key} for key in keys[start : start + DELETE_BATCH]
            ]
            with aws_call(f"s3 DeleteObjects {self.bucket}/{prefix}"):
                response = await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise BackendError(
                    f"s3 DeleteObjects {self.bucket}: {len(errors)} keys not deleted, "
                    f"{first.get('Key')}: {first.get('Code')}"
                )
        return len(keys)

    async def ping(self) -> None:
        """Raise :class:`~service.ports.BackendError` unless the bucket answers HeadBucket."""
        with aws_call(f"s3 HeadBucket {self.bucket}"):
            await self._client.head_bucket(Bucket=self.bucket)
