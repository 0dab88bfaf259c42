"""Storage on a local path and on a URI: atomic and durable writes, reads, torch checkpoints,
arch files, URIs with a query string, the trial table with a damaged part, the lease."""

import json
import os
import re
import socket
import stat
import sys
import threading
import time
import uuid

import pytest
import torch

from raygan import results, spaces, storage


@pytest.fixture(params=["local", "uri"])
def root(request, tmp_path):
    return str(tmp_path) if request.param == "local" else f"file://{tmp_path}"


def test_write_read_exists_and_no_temporary_left(root, tmp_path):
    path = storage.join(root, "deep", "state.pkl")
    assert not storage.exists(path)
    storage.write_bytes(path, b"one")
    storage.write_bytes(path, b"two")  # replaced atomically
    assert storage.exists(path) and storage.read_bytes(path) == b"two"
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["state.pkl"]


def test_torch_state_and_arch_files_round_trip(root):
    path = storage.join(root, "state.pt")
    storage.write_bytes(path, b"")
    with open(path.removeprefix("file://"), "wb") as f:
        torch.save({"G": {"w": torch.arange(3.0)}}, f)
    assert torch.equal(storage.load_torch(path)["G"]["w"], torch.arange(3.0))
    arch = spaces.Arch(
        spaces.Genotype.parse("autogan:1,0,1,1/1,0,0,1,1/1,0,1,0,3"),
        spaces.Genotype.parse("autogan_d:"),
        256,
        128,
    )
    spaces.write_arch_file(storage.join(root, "best.yaml"), arch)
    assert spaces.read_arch_file(storage.join(root, "best.yaml")) == arch


def test_delete_removes_a_file_or_a_folder_and_accepts_one_already_gone(root, tmp_path):
    keep = storage.join(root, "keep", "state.pt")
    files = [storage.join(root, "run", "a", "state.pt"), storage.join(root, "run", "b.json")]
    for path in [keep, *files]:
        storage.write_bytes(path, b"x")
    storage.delete(files[1])
    assert not storage.exists(files[1]) and storage.exists(files[0])
    storage.delete(storage.join(root, "run"))
    assert not (tmp_path / "run").exists() and storage.exists(keep)
    storage.delete(storage.join(root, "run"))  # gone already: nothing to do, no error
    assert storage.exists(keep)


# ----- durable local writes ----------------------------------------------------------------------
def record_sync_calls(monkeypatch) -> list[tuple[str, tuple[int, int]]]:
    """``os.fsync`` and ``os.replace`` wrapped to log what they were called on, in order: a
    power cut cannot be simulated in a test, so the durable write is checked by its calls
    (file fsynced before the rename, folders fsynced after entries appear in them)."""
    calls: list[tuple[str, tuple[int, int]]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        calls.append(("dir" if stat.S_ISDIR(st.st_mode) else "file", (st.st_dev, st.st_ino)))
        real_fsync(fd)

    def replace(src, dst):
        real_replace(src, dst)
        st = os.stat(dst)
        calls.append(("rename", (st.st_dev, st.st_ino)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


def node(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def test_local_write_fsyncs_file_before_rename_and_folders_after(tmp_path, monkeypatch):
    """Not a power-loss test (none can run here): the calls that make the write survive one.
    New folders' parents are fsynced when they are created, the file before its rename, its
    folder after."""
    calls = record_sync_calls(monkeypatch)
    path = tmp_path / "a" / "b" / "state.json"
    storage.write_bytes(str(path), b"one")
    file = node(path)
    assert calls == [
        ("dir", node(tmp_path)),
        ("dir", node(tmp_path / "a")),
        ("file", file),
        ("rename", file),
        ("dir", node(tmp_path / "a" / "b")),
    ]
    calls.clear()
    storage.write_bytes(f"file://{path}", b"two")  # file:// is the same local disk
    file = node(path)
    assert calls == [("file", file), ("rename", file), ("dir", node(path.parent))]
    assert path.read_bytes() == b"two" and os.listdir(path.parent) == ["state.json"]


def test_a_failed_local_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    storage.write_bytes(str(path), b"old")

    def no_rename(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="disk gone"):
        storage.write_bytes(str(path), b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["state.json"]


def test_table_parts_are_written_durably(tmp_path, monkeypatch):
    calls = record_sync_calls(monkeypatch)
    part = results.append(str(tmp_path / "exp"), [{"trial_id": "a"}])
    assert ("file", node(part)) in calls and ("dir", node(os.path.dirname(part))) in calls
    assert os.listdir(os.path.dirname(part)) == [os.path.basename(part)]


# ----- URIs with a query string ------------------------------------------------------------------
def test_join_parent_and_basename_keep_a_query_string_at_the_end():
    base = "s3://bucket/exp?endpoint_override=127.0.0.1:9000&scheme=http"
    query = "?endpoint_override=127.0.0.1:9000&scheme=http"
    path = storage.join(base, "trials.parquet", "part-1.parquet")
    assert path == "s3://bucket/exp/trials.parquet/part-1.parquet" + query
    assert storage.basename(path) == "part-1.parquet"
    assert storage.parent(path) == "s3://bucket/exp/trials.parquet" + query
    assert storage.join("s3://bucket/exp/", "a") == "s3://bucket/exp/a"
    assert results.table_path(base) == "s3://bucket/exp/trials.parquet" + query
    assert storage.join("exp", "a", "b") == os.path.join("exp", "a", "b")
    assert storage.parent(os.path.join("exp", "a")) == "exp" and storage.basename("exp/a") == "a"


# ----- the trial table with a damaged part -------------------------------------------------------
def damage(exp: str, how: str) -> str:
    """A table with two good parts and one damaged one (``truncated`` or ``garbage``)."""
    results.append(exp, [{"trial_id": "a", "strategy": "train"}])
    bad = results.append(exp, [{"trial_id": "b", "strategy": "train"}])
    results.append(exp, [{"trial_id": "c", "strategy": "train"}])
    with open(bad, "rb") as f:
        data = f.read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 2] if how == "truncated" else b"not parquet at all " * 20)
    return bad


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_an_unreadable_part_stops_load_with_one_line_naming_it(tmp_path, how):
    exp = str(tmp_path / "exp")
    bad = damage(exp, how)
    with pytest.raises(results.TableError) as caught:
        results.load(exp)
    message = str(caught.value)
    assert "\n" not in message and bad in message and "move it out" in message, message
    assert caught.value.path == bad and isinstance(caught.value, ValueError)
    df = results.load(exp, skip_unreadable=True)
    assert list(df["trial_id"]) == ["a", "c"]
    df, skipped = results.load_table(results.table_path(exp))
    assert list(df["trial_id"]) == ["a", "c"] and [e.path for e in skipped] == [bad]


def test_analyze_goes_on_without_an_unreadable_part_and_says_so(tmp_path, capsys):
    from raygan.cli import main

    exp = str(tmp_path / "exp")
    bad = damage(exp, "garbage")
    assert main(["analyze", exp]) == 0
    out, err = capsys.readouterr()
    skip_lines = [line for line in err.splitlines() if bad in line]
    assert len(skip_lines) == 1 and skip_lines[0].startswith("raygan analyze: skipped"), err
    assert "a" in out.split() and "c" in out.split() and "b" not in out.split()


# ----- the lease ---------------------------------------------------------------------------------
@pytest.fixture(params=["local", "file", "s3"])
def lease_root(request, tmp_path):
    """An experiment folder on a local disk, as ``file://``, and on S3 (moto)."""
    if request.param == "s3":
        return request.getfixturevalue("s3_uri")
    return str(tmp_path / "exp") if request.param == "local" else f"file://{tmp_path}/exp"


def lease_record(root: str) -> dict:
    return json.loads(storage.read_bytes(storage.join(root, storage.LEASE_FILE)))


def age_lease(root: str, seconds: float) -> None:
    """Make the lease's last heartbeat ``seconds`` older (its driver stopped beating)."""
    record = lease_record(root)
    record["heartbeat_at"] -= seconds
    storage.write_bytes(storage.join(root, storage.LEASE_FILE), json.dumps(record).encode())


def test_a_second_driver_is_refused_with_one_line_naming_the_holder(lease_root):
    first = storage.Lease.acquire(lease_root)
    record = lease_record(lease_root)
    assert record["token"] == first.token and record["pid"] == os.getpid()
    with pytest.raises(storage.LeaseHeld) as caught:
        storage.Lease.acquire(lease_root)
    message = str(caught.value)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first.started_at))
    for part in (socket.gethostname(), f"pid {os.getpid()}", started, "last heartbeat"):
        assert part in message, message
    assert re.search(r"last heartbeat [0-9] s ago", message), message
    assert "\n" not in message and isinstance(caught.value, ValueError)
    first.release()
    assert not storage.exists(storage.join(lease_root, storage.LEASE_FILE))
    first.release()  # twice is fine
    with storage.Lease.acquire(lease_root) as second:
        assert not second.lost
    assert not storage.exists(storage.join(lease_root, storage.LEASE_FILE))


def test_a_lease_whose_driver_died_on_this_host_is_taken_over_at_once(tmp_path):
    """A resume right after a crash need not wait out the timeout: the holder's pid is gone."""
    import subprocess
    import sys

    root = str(tmp_path / "exp")
    code = "import sys; from raygan import storage; storage.Lease.acquire(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, root], check=True)  # exits holding it
    with pytest.raises(storage.LeaseHeld, match="gone from this host: --resume takes it over"):
        storage.Lease.acquire(root)  # without --resume: refused all the same
    taker = storage.Lease.acquire(root, takeover=True)
    assert lease_record(root)["token"] == taker.token
    mine = storage.Lease.acquire(str(tmp_path / "other"))
    with pytest.raises(storage.LeaseHeld, match="live lease is never taken over"):
        storage.Lease.acquire(str(tmp_path / "other"), takeover=True)  # alive: this process
    mine.release()
    taker.release()


def test_a_stale_lease_is_taken_over_only_with_takeover(lease_root):
    dead = storage.Lease.acquire(lease_root, timeout_s=60)
    age_lease(lease_root, 1000)
    with pytest.raises(storage.LeaseHeld, match=r"over the 60 s timeout.*--resume"):
        storage.Lease.acquire(lease_root, timeout_s=60)
    taker = storage.Lease.acquire(lease_root, takeover=True, timeout_s=60)
    assert lease_record(lease_root)["token"] == taker.token
    with pytest.raises(storage.LeaseHeld, match="taken over by host"):
        dead.renew()  # the old driver woke up: it learns it lost the lease
    assert dead.lost and not taker.lost
    dead.release()  # leaves the new holder's lease alone
    assert lease_record(lease_root)["token"] == taker.token
    taker.renew()
    taker.release()
    assert not storage.exists(storage.join(lease_root, storage.LEASE_FILE))


def test_a_live_lease_is_refused_even_with_takeover(lease_root):
    live = storage.Lease.acquire(lease_root, timeout_s=60)
    age_lease(lease_root, 30)
    with pytest.raises(storage.LeaseHeld, match="live lease is never taken over") as caught:
        storage.Lease.acquire(lease_root, takeover=True, timeout_s=60)
    assert re.search(r"last heartbeat 3[0-9] s ago", str(caught.value)), caught.value
    live.renew()
    live.release()


def test_of_two_concurrent_takers_of_a_stale_lease_exactly_one_wins(lease_root):
    storage.Lease.acquire(lease_root, timeout_s=60)
    age_lease(lease_root, 1000)
    start = threading.Barrier(4)
    won, refused = [], []

    def take():
        start.wait()
        try:
            won.append(storage.Lease.acquire(lease_root, takeover=True, timeout_s=60))
        except storage.LeaseHeld as err:
            refused.append(str(err))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 3, refused
    assert lease_record(lease_root)["token"] == won[0].token
    won[0].release()


def test_the_heartbeat_renews_and_notices_a_takeover(lease_root):
    lease = storage.Lease.acquire(lease_root, timeout_s=2).start_heartbeat()
    first = lease_record(lease_root)["heartbeat_at"]
    wait_for(lambda: lease_record(lease_root)["heartbeat_at"] > first, "a heartbeat")
    intruder = {**lease_record(lease_root), "token": "someone-else", "host": "elsewhere"}
    storage.write_bytes(storage.join(lease_root, storage.LEASE_FILE), json.dumps(intruder).encode())
    wait_for(lambda: lease.lost, "the heartbeat to notice")
    assert "taken over by host elsewhere" in lease.lost_reason, lease.lost_reason
    lease.release()
    assert lease_record(lease_root)["token"] == "someone-else"


def test_an_unreadable_lease_file_is_refused_until_it_is_stale(lease_root):
    storage.write_bytes(storage.join(lease_root, storage.LEASE_FILE), b"{half a reco")
    with pytest.raises(storage.LeaseHeld, match="unreadable lease file written"):
        storage.Lease.acquire(lease_root, takeover=True, timeout_s=60)
    storage.Lease.acquire(lease_root, takeover=True, timeout_s=0).release()


def test_best_effort_lease_on_a_store_without_conditional_writes():
    root = f"memory://raygan-lease-{uuid.uuid4().hex[:8]}/exp"
    lease = storage.Lease.acquire(root)
    with pytest.raises(storage.LeaseHeld, match=f"pid {os.getpid()}"):
        storage.Lease.acquire(root)
    lease.release()
    assert not storage.exists(storage.join(root, storage.LEASE_FILE))


def test_an_s3_lease_without_boto3_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ImportError, match=r"pip install 'raygan\[s3\]'"):
        storage.Lease.acquire("s3://bucket/exp")


def wait_for(predicate, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.05)
