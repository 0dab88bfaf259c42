"""Files on any storage Ray's ``storage_path`` accepts: a local path or a URI (s3://, gs://,
file://, ...), through pyarrow's filesystems; and the experiment's lease.

Searches write their tables, driver state, genotype files and checkpoints here, so a cluster
run with ``--out s3://bucket/prefix`` keeps everything on shared storage. Writes are atomic
and, on local disks, durable: a local file is written under a temporary name, fsynced, renamed
into place and its folder fsynced (a power cut leaves the old file or the new one, never an
empty one); an object store's upload is atomic already (the object appears whole when the
upload completes).

A URI may carry pyarrow's options as a query string
(``s3://bucket/prefix?endpoint_override=host:9000&scheme=http``, for an S3-compatible server);
:func:`join`, :func:`parent` and :func:`basename` keep the query at the end where it belongs.
Without a query, pyarrow and boto3 read the endpoint from ``AWS_ENDPOINT_URL_S3``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from raygan.errors import UsageError

T = TypeVar("T")


def within(seconds: float, what: str, work: Callable[[], T]) -> T:
    """``work()`` (reading or writing the storage an option names), waiting at most
    ``seconds``: a bucket or cloud filesystem that never answers stops with one line naming
    ``what`` instead of a hang. Whatever ``work`` raises is raised here."""
    done: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(work())
        except BaseException as err:  # raised in the caller's thread below
            failed.append(err)

    worker = threading.Thread(target=run, name="raygan-storage", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise UsageError(f"{what}: no answer from its storage within {seconds:g} s")
    if failed:
        raise failed[0]
    return done[0]


def is_uri(path: str) -> bool:
    return "://" in path


def _split_query(path: str) -> tuple[str, str]:
    """A URI without its query string, and the query (with its ``?``, or empty)."""
    if not is_uri(path):
        return path, ""
    head, mark, query = path.partition("?")
    return head, mark + query


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
    """``base`` and ``parts`` joined by ``/`` (a URI's query string stays at the end)."""
    if not is_uri(base):
        return os.path.join(base, *parts)
    head, query = _split_query(base)
    return "/".join([head.rstrip("/"), *parts]) + query


def parent(path: str) -> str:
    """The folder ``path`` is in (a URI keeps its query string)."""
    if not is_uri(path):
        return os.path.dirname(path.rstrip(os.sep)) or "."
    head, query = _split_query(path)
    return head.rstrip("/").rpartition("/")[0] + query


def basename(path: str) -> str:
    """The last name in ``path`` (without a URI's query string)."""
    head = _split_query(path)[0].rstrip("/")
    return head.rpartition("/")[2] if is_uri(path) else os.path.basename(head)


def exists(path: str) -> bool:
    fs, inner = filesystem(path)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def names(folder: str) -> list[str]:
    """The names directly under ``folder``, sorted (none if it is not a folder)."""
    fs, inner = filesystem(folder)
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        return []
    return sorted(f.base_name for f in fs.get_file_info(pafs.FileSelector(inner)))


def makedirs(path: str) -> None:
    fs, inner = filesystem(path)
    fs.create_dir(inner, recursive=True)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (readers see the old file or the new one), and on
    a local disk durably (it survives a power cut once this returns)."""
    fs, inner = filesystem(path)
    if isinstance(fs, pafs.LocalFileSystem):
        _write_local(inner, data)
        return
    fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(inner) as f:
        f.write(data)


def _write_local(path: str, data: bytes) -> None:
    """Temporary file (hidden, so dataset readers skip it), fsync, rename, fsync the folder:
    without the first fsync a crash can leave the new name on an empty file; without the
    second, the rename itself may be lost."""
    folder, name = os.path.split(path)
    _makedirs_durable(folder)
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _makedirs_durable(folder: str) -> None:
    """``os.makedirs``, then fsync the parent of every folder it created, so that the new
    folders' entries are on disk before a file is renamed into them."""
    missing = []
    probe = folder
    while probe and not os.path.isdir(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    os.makedirs(folder, exist_ok=True)
    for created in reversed(missing):
        _fsync_dir(os.path.dirname(created))


def _fsync_dir(folder: str) -> None:
    """fsync a folder (its entries: names created or renamed in it); a platform that cannot
    open a folder (Windows) is skipped."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


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
    """A Ray ``Checkpoint``'s folder as a local path or a URI (``s3://...``; with the
    endpoint in its query when the storage path had it there, so the URI reaches it again)."""
    fs = checkpoint.filesystem
    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        return checkpoint.path
    return f"{fs.type_name}://{checkpoint.path.lstrip('/')}{_endpoint_query(fs)}"


def _endpoint_query(fs: pafs.FileSystem) -> str:
    """An S3 filesystem's endpoint as a URI query, unless it is the one this environment
    already points at (``AWS_ENDPOINT_URL_S3``) or AWS itself. pyarrow exposes its options
    only through pickling (``__reduce__``)."""
    if fs.type_name != "s3":
        return ""
    try:
        options = fs.__reduce__()[1][0]
        endpoint, scheme = options.get("endpoint_override"), options.get("scheme")
    except (AttributeError, IndexError, KeyError, TypeError):  # pragma: no cover - new pyarrow
        return ""
    environment = {os.environ.get("AWS_ENDPOINT_URL_S3"), os.environ.get("AWS_ENDPOINT_URL")}
    if not endpoint or endpoint in environment:
        return ""
    return f"?endpoint_override={endpoint}&scheme={scheme or 'https'}"


# ----- the lease: one driver per experiment ----------------------------------------------------
LEASE_FILE = "lease.json"
LEASE_FORMAT = "raygan.lease/1"
LEASE_TIMEOUT_S = 120.0
LEASE_FILES = frozenset({LEASE_FILE, ".lease.lock"})
"""What a lease leaves in an experiment folder."""
SETTLE_S = 0.5  # best-effort stores: how long a write is left to be overwritten before read-back


class LeaseHeld(ValueError):
    """Another driver holds (or took over) the experiment's lease: one line naming it."""


class Lease:
    """``<out>/lease.json``: which driver runs the experiment (host, pid, start time, last
    heartbeat, a random token), so that a second driver, or a resume while the first one
    still runs, stops instead of interleaving its writes with the first one's.

    Take it with :meth:`acquire`; keep it alive with :meth:`start_heartbeat` (or ``with``,
    which starts the heartbeat and releases at the end); check :attr:`lost` at boundaries (the
    heartbeat sets it when another driver took the lease over or storage stayed unreachable for
    ``timeout_s``). How each storage makes "exactly one holder" hold:

    - local disks (and ``file://``): exclusive create (``O_CREAT | O_EXCL``, then fsync);
      takeover, renewal and release compare and swap under ``flock`` on ``.lease.lock``
      (across hosts on NFS too; without ``fcntl``, as on Windows, unlocked, best effort);
    - ``s3://``: conditional PUTs through boto3 (``If-None-Match: *`` to create, ``If-Match:
      <etag>`` to renew or take over, so two takers of a stale lease cannot both win); needs
      ``pip install 'raygan[s3]'``;
    - anything else (``gs://``, ``memory://``, ...): best effort, as these offer no
      conditional write through pyarrow: write when absent (or unchanged), wait ``SETTLE_S``,
      read back the token; two drivers starting within one round trip could both win.

    Staleness is judged by the holder's own clock (``heartbeat_at``): hosts must agree on the
    time to well within ``timeout_s`` (NTP does).
    """

    def __init__(self, out: str, timeout_s: float, store: Any) -> None:
        self.out = out
        self.path = join(out, LEASE_FILE)
        self.timeout_s = timeout_s
        self.token = uuid.uuid4().hex
        self.started_at = time.time()
        self._store = store
        self._version: Any = None
        self._lost_reason: str | None = None
        self._released = False
        self._lock = threading.Lock()  # the heartbeat thread and the driver's release
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed = time.monotonic()

    @classmethod
    def acquire(
        cls, out: str, *, takeover: bool = False, timeout_s: float = LEASE_TIMEOUT_S
    ) -> Lease:
        """Take ``out``'s lease, or raise :class:`LeaseHeld` naming its holder. With
        ``takeover`` (a resume), a lease whose heartbeat is older than ``timeout_s`` is taken
        over (its driver is presumed dead), as is one whose driver ran on this host and is
        gone (a resume right after a crash need not wait); a live one is refused all the
        same."""
        lease = cls(out, timeout_s, _lease_store(join(out, LEASE_FILE)))
        for _ in range(5):  # each turn, the lease was released or replaced meanwhile
            lease._version = lease._store.create(lease._record())
            if lease._version is not None:
                return lease
            found = lease._store.read()
            if found is None:
                continue
            data, version, mtime = found
            holder = _holder(data)
            age = _age(holder, mtime)
            dead = _dead_here(holder)
            if not takeover or (age <= timeout_s and not dead):
                raise LeaseHeld(_held_message(lease.path, holder, age, timeout_s, takeover, dead))
            lease._version = lease._store.replace(lease._record(), version)
            if lease._version is not None:
                return lease
        raise LeaseHeld(f"{lease.path} kept changing while this driver tried to take it")

    @property
    def lost(self) -> bool:
        """Whether this driver no longer holds the lease: it must stop writing."""
        return self._lost_reason is not None

    @property
    def lost_reason(self) -> str | None:
        return self._lost_reason

    def renew(self) -> None:
        """Write a fresh heartbeat if the lease is still ours; else mark it lost and raise
        :class:`LeaseHeld` naming who has it now."""
        with self._lock:
            if self._lost_reason is not None:
                raise LeaseHeld(self._lost_reason)
            if self._released:
                raise RuntimeError(f"{self.path}: renewing a lease this driver released")
            record = self._record()
            version = self._store.replace(record, self._version)
            if version is None:  # perhaps our own last write, whose answer never came
                found = self._store.read()
                if found is not None and (_holder(found[0]) or {}).get("token") == self.token:
                    version = self._store.replace(record, found[1])
            if version is None:
                self._lose(self._taken_message())
                raise LeaseHeld(self._lost_reason)
            self._version, self._renewed = version, time.monotonic()

    def start_heartbeat(self, interval_s: float | None = None) -> Lease:
        """Renew every ``interval_s`` (``timeout_s / 4``) in a daemon thread until released
        or lost."""
        if self._thread is None:
            interval = interval_s if interval_s is not None else self.timeout_s / 4
            self._thread = threading.Thread(
                target=self._beat, args=(interval,), name="raygan-lease", daemon=True
            )
            self._thread.start()
        return self

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours (repeating is fine)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._released or self._lost_reason is not None:
                return
            self._released = True
            if not self._store.delete(self._version):
                found = self._store.read()
                if found is not None and (_holder(found[0]) or {}).get("token") == self.token:
                    self._store.delete(found[1])

    def __enter__(self) -> Lease:
        return self.start_heartbeat()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LeaseHeld:
                return
            except Exception as err:  # storage unreachable: retry until a takeover is possible
                if time.monotonic() - self._renewed > self.timeout_s:
                    reason = " ".join(str(err).split()) or type(err).__name__
                    self._lose(
                        f"{self.path}: no heartbeat could be written for {self.timeout_s:g} s "
                        f"({reason}); another driver may have taken the lease over"
                    )
                    return

    def _lose(self, reason: str) -> None:
        self._lost_reason = reason
        self._stop.set()

    def _taken_message(self) -> str:
        found = self._store.read()
        holder = _holder(found[0]) if found is not None else None
        if holder is None:
            return f"{self.path}: this driver's lease is gone (removed or replaced)"
        return f"{self.path}: this driver's lease was taken over by {_describe(holder)}"

    def _record(self) -> bytes:
        return json.dumps(
            {
                "format": LEASE_FORMAT,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": self.started_at,
                "heartbeat_at": time.time(),
                "token": self.token,
            }
        ).encode()


def lease_holder(out: str, timeout_s: float = LEASE_TIMEOUT_S) -> str | None:
    """One line naming the driver that holds ``out``'s lease now, or None (no lease, a stale
    one, one whose driver is gone from this host, or this process's own); reads only."""
    try:
        found = _lease_store(join(out, LEASE_FILE)).read()
    except NotADirectoryError:  # --out is a file: creating it will say so
        return None
    if found is None:
        return None
    holder = _holder(found[0])
    age = _age(holder, found[2])
    mine = holder is not None and (holder["host"], holder["pid"]) == (
        socket.gethostname(),
        os.getpid(),
    )
    if age > timeout_s or _dead_here(holder) or mine:
        return None
    return _held_message(join(out, LEASE_FILE), holder, age, timeout_s, takeover=False)


def _holder(data: bytes) -> dict[str, Any] | None:
    """The lease record in ``data``, or None when it is not one (a partial or foreign file)."""
    try:
        record = json.loads(data)
    except ValueError:
        return None
    keys = ("host", "pid", "started_at", "heartbeat_at", "token")
    if not isinstance(record, dict) or any(k not in record for k in keys):
        return None
    return record


def _dead_here(holder: dict[str, Any] | None) -> bool:
    """Whether the lease's driver ran on this host and its process is gone."""
    if holder is None or holder["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def _age(holder: dict[str, Any] | None, mtime: float) -> float:
    """Seconds since the last heartbeat (since the file was written, when it is unreadable)."""
    return max(0.0, time.time() - (holder["heartbeat_at"] if holder else mtime))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _describe(holder: dict[str, Any]) -> str:
    return f"host {holder['host']}, pid {holder['pid']}, started {_iso(holder['started_at'])}"


def _held_message(
    path: str,
    holder: dict[str, Any] | None,
    age: float,
    timeout_s: float,
    takeover: bool,
    dead: bool = False,
) -> str:
    who = (
        f"{_describe(holder)}, last heartbeat {age:.0f} s ago"
        if holder
        else f"an unreadable lease file written {age:.0f} s ago"
    )
    if dead:
        advice = "that process is gone from this host: --resume takes it over"
    elif age > timeout_s:
        advice = f"over the {timeout_s:g} s timeout: if its driver is dead, --resume takes it over"
    elif takeover:
        advice = (
            f"a live lease is never taken over: stop that driver, or if it is dead resume again "
            f"once its heartbeat is {timeout_s:g} s old"
        )
    else:
        advice = "stop that driver first, or wait until it finishes"
    return f"{path} is held by another driver ({who}); {advice}"


def _lease_store(path: str) -> Any:
    """The conditional-write primitives for ``path``'s storage (see :class:`Lease`)."""
    if path.startswith("s3://"):
        return _S3Store(path)
    fs, inner = filesystem(path)
    if isinstance(fs, pafs.LocalFileSystem):
        return _LocalStore(inner)
    return _BestEffortStore(fs, inner)


class _LocalStore:
    """Exclusive create, and compare-and-swap of the whole content under ``flock``. A version
    is the file's content."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.folder = os.path.dirname(path)

    def create(self, data: bytes) -> bytes | None:
        _makedirs_durable(self.folder)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.folder)
        return data

    def read(self) -> tuple[bytes, bytes, float] | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
                return data, data, os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None

    def replace(self, data: bytes, version: bytes) -> bytes | None:
        with self._locked():
            found = self.read()
            if found is None or found[1] != version:
                return None
            _write_local(self.path, data)
            return data

    def delete(self, version: bytes) -> bool:
        with self._locked():
            found = self.read()
            if found is None or found[1] != version:
                return False
            os.unlink(self.path)
            _fsync_dir(self.folder)
            return True

    @contextlib.contextmanager
    def _locked(self) -> Any:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no flock, best effort
            yield
            return
        fd = os.open(os.path.join(self.folder, ".lease.lock"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


class _S3Store:
    """Conditional PUTs and DELETEs through boto3 (pyarrow has none). A version is an ETag.
    The endpoint comes from the URI's ``endpoint_override``/``scheme`` query, else boto3's
    own configuration (``AWS_ENDPOINT_URL_S3``, ``AWS_DEFAULT_REGION``, ...)."""

    def __init__(self, uri: str) -> None:
        try:
            import boto3
            from botocore.exceptions import ClientError
        except ImportError:
            raise ImportError(f"a lease on {uri} needs boto3: pip install 'raygan[s3]'") from None
        self._client_error = ClientError
        parts = urlsplit(uri)
        self.bucket, self.key = parts.netloc, parts.path.lstrip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        endpoint = query.get("endpoint_override")
        if endpoint and "://" not in endpoint:
            endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
        self._s3 = boto3.client("s3", endpoint_url=endpoint, region_name=query.get("region"))

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[bytes, str, float] | None:
        try:
            got = self._s3.get_object(Bucket=self.bucket, Key=self.key)
        except self._client_error as err:
            if self._refused(err):
                return None
            raise
        return got["Body"].read(), got["ETag"], got["LastModified"].timestamp()

    def replace(self, data: bytes, version: str) -> str | None:
        return self._put(data, IfMatch=version)

    def delete(self, version: str) -> bool:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
        except self._client_error as err:
            if self._refused(err):
                return False
            raise
        return True

    def _put(self, data: bytes, **condition: str) -> str | None:
        try:
            return self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)[
                "ETag"
            ]
        except self._client_error as err:
            if self._refused(err):
                return None
            raise

    @staticmethod
    def _refused(err: Any) -> bool:
        """A precondition that did not hold (412), a concurrent conditional write (409), or no
        such key: the caller lost, nothing went wrong (a missing bucket is an error)."""
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status in (409, 412) or error.get("Code") in ("NoSuchKey", "PreconditionFailed")


class _BestEffortStore:
    """Storage without conditional writes through pyarrow: write if absent (or unchanged),
    wait :data:`SETTLE_S`, read back. A version is the content."""

    def __init__(self, fs: pafs.FileSystem, path: str) -> None:
        self.fs, self.path = fs, path

    def create(self, data: bytes) -> bytes | None:
        if self.fs.get_file_info(self.path).type != pafs.FileType.NotFound:
            return None
        return self._write_and_confirm(data)

    def read(self) -> tuple[bytes, bytes, float] | None:
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            return None
        with self.fs.open_input_stream(self.path) as f:
            data = f.read()
        mtime = info.mtime.timestamp() if info.mtime is not None else time.time()
        return data, data, mtime

    def replace(self, data: bytes, version: bytes) -> bytes | None:
        found = self.read()
        if found is None or found[1] != version:
            return None
        return self._write_and_confirm(data)

    def delete(self, version: bytes) -> bool:
        found = self.read()
        if found is None or found[1] != version:
            return False
        self.fs.delete_file(self.path)
        return True

    def _write_and_confirm(self, data: bytes) -> bytes | None:
        self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)
        time.sleep(SETTLE_S)
        found = self.read()
        return data if found is not None and found[1] == data else None
