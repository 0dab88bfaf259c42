"""Files on any storage Ray's ``storage_path`` accepts: a local path or a URI (s3://, gs://,
file://, ...), through pyarrow's filesystems.

Searches write their tables, driver state, genotype files and checkpoints here, so a cluster
run with ``--out s3://bucket/prefix`` keeps everything on shared storage. Writes are atomic:
a local file is written under a temporary name and renamed; an object store's single PUT is
atomic already.
"""

from __future__ import annotations

import io
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs


def is_uri(path: str) -> bool:
    return "://" in path


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem behind a local path or URI, and the path within it.

    pyarrow's own filesystems first; a scheme pyarrow does not know goes through fsspec (a
    ``ValueError`` naming the URI when neither knows it)."""
    if "://" not in path:
        return pafs.LocalFileSystem(), os.path.abspath(path)
    try:
        return pafs.FileSystem.from_uri(path)
    except pa.ArrowInvalid as arrow_err:
        try:
            import fsspec
        except ImportError:  # pragma: no cover - fsspec comes with ray[tune]
            raise ValueError(f"{path}: {arrow_err}") from None
        try:
            fs, root = fsspec.core.url_to_fs(path)
        except (ImportError, ValueError) as err:
            raise ValueError(f"no filesystem for {path}: {err}") from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), root


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if is_uri(base) else os.path.join(base, *parts)


def exists(path: str) -> bool:
    fs, inner = filesystem(path)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def makedirs(path: str) -> None:
    fs, inner = filesystem(path)
    fs.create_dir(inner, recursive=True)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (readers see the old file or the new one)."""
    fs, inner = filesystem(path)
    parent = inner.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{inner}.{uuid.uuid4().hex[:8]}.tmp"
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        os.replace(tmp, inner)
    else:
        with fs.open_output_stream(inner) as f:
            f.write(data)


def read_bytes(path: str) -> bytes:
    fs, inner = filesystem(path)
    with fs.open_input_stream(inner) as f:
        return f.read()


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def delete(path: str) -> None:
    """Remove a file or a whole folder; a path already gone is fine (a resumed prune repeats)."""
    fs, inner = filesystem(path)
    kind = fs.get_file_info(inner).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(inner)
    elif kind == pafs.FileType.File:
        fs.delete_file(inner)


def load_torch(path: str, **kwargs: Any) -> Any:
    """``torch.load`` from any storage, with ``weights_only=True`` (plain tensors and data)."""
    import torch

    if not is_uri(path):
        return torch.load(path, weights_only=True, **kwargs)
    return torch.load(io.BytesIO(read_bytes(path)), weights_only=True, **kwargs)


def checkpoint_uri(checkpoint: Any) -> str:
    """A Ray ``Checkpoint``'s folder as a local path or a URI (``s3://...``)."""
    fs = checkpoint.filesystem
    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        return checkpoint.path
    return f"{fs.type_name}://{checkpoint.path.lstrip('/')}"
