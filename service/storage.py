"""Where uploads and artifacts live: a local directory by default, an S3-compatible bucket
when ``MOBILECONV_STORAGE=s3``. Both sit behind :class:`Storage`, addressed by keys such as
``jobs/<id>/model.pte``.

Uploads arrive in a staging directory on local disk first (streamed and hashed there, see
``service.uploads``), then :meth:`Storage.put_file` moves them in. boto3 is imported only when
S3 storage is configured, so it is an optional dependency.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Protocol

from service.errors import NotFound
from service.settings import Settings

logger = logging.getLogger(__name__)


class Storage(Protocol):
    """The operations the API and the worker need from an artifact store."""

    def put_file(self, key: str, source: Path) -> None:
        """Store ``source`` under ``key``; the source file may be moved away."""

    def get_file(self, key: str, dest: Path) -> None:
        """Copy the object at ``key`` to the local file ``dest``."""

    def local_path(self, key: str) -> Path | None:
        """Return a local file for ``key`` when the store is local, else ``None``."""

    def presigned_url(self, key: str, expires_in: int, filename: str) -> str:
        """Return a URL the store itself serves ``key`` at (remote stores only)."""

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with ``prefix``."""


def staging_dir(settings: Settings) -> Path:
    """Return the local directory uploads are spooled to before they are stored."""
    path = settings.data_dir / "staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


class LocalStorage:
    """Objects as files under ``root``; keys map onto relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise NotFound(f"The storage key {key!r} is outside the store.")
        return path

    def put_file(self, key: str, source: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, dest)

    def get_file(self, key: str, dest: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise NotFound(f"The stored object {key!r} does not exist.")
        shutil.copyfile(source, dest)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def presigned_url(self, key: str, expires_in: int, filename: str) -> str:
        raise NotImplementedError("Local storage is served by the API itself.")

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)


class S3Storage:
    """Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph); credentials come from the
    usual AWS environment variables or instance role."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        try:
            import boto3
        except ImportError:
            raise RuntimeError(
                "MOBILECONV_STORAGE=s3 needs boto3; install it with `pip install boto3`."
            ) from None
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None)
        self.bucket = bucket
        self.prefix = prefix

    def put_file(self, key: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self.prefix + key)
        source.unlink(missing_ok=True)

    def get_file(self, key: str, dest: Path) -> None:
        self.client.download_file(self.bucket, self.prefix + key, str(dest))

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_url(self, key: str, expires_in: int, filename: str) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.prefix + key,
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                },
                ExpiresIn=expires_in,
            )
        )

    def delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})


def create_storage(settings: Settings) -> Storage:
    """Return the store the settings name."""
    if settings.storage == "s3":
        return S3Storage(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url)
    return LocalStorage(settings.data_dir / "store")
