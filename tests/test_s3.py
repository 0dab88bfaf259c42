"""raygan's storage on S3 over the wire: pyarrow's real S3FileSystem against a local moto
server (the ``s3_uri`` fixture, tests/conftest.py). The lease's S3 tests run with the local ones
in tests/test_storage.py (its ``lease_root`` fixture includes S3); a whole search killed and
resumed on S3 is AutoGAN's in tests/test_golden.py."""

import io
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pyarrow.fs as pafs
import pytest
import torch

from raygan import results, state, storage

WRITER = """
import sys
from raygan import results
uri, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    results.append(uri, [{"trial_id": f"{who}-{i}", "is": float(i)}])
"""


def names_under(uri: str) -> list[str]:
    fs, inner = storage.filesystem(uri)
    return sorted(f.base_name for f in fs.get_file_info(pafs.FileSelector(inner, recursive=True)))


def test_appends_from_threads_and_processes_all_land_once(s3_uri):
    n = 6
    processes = [
        subprocess.Popen([sys.executable, "-c", WRITER, s3_uri, f"proc{k}", str(n)])
        for k in range(2)
    ]

    def writer(k):
        for i in range(n):
            results.append(s3_uri, [{"trial_id": f"thread{k}-{i}", "is": float(i)}])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    df = results.load(s3_uri)
    who = [f"proc{k}" for k in range(2)] + [f"thread{k}" for k in range(3)]
    assert sorted(df["trial_id"]) == sorted(f"{w}-{i}" for w in who for i in range(n))
    assert list(df.columns) == list(results.COLUMNS)


def test_a_uri_with_the_endpoint_in_its_query_string(moto_s3, s3_uri, monkeypatch):
    """The query rides at the end through every join, and is what reaches the server."""
    query_uri = s3_uri + f"?endpoint_override={moto_s3.endpoint}&scheme=http"
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # only the query can say where the server is
    path = storage.join(query_uri, "deep", "blob.bin")
    storage.write_bytes(path, b"payload")
    assert storage.exists(path) and storage.read_bytes(path) == b"payload"
    results.append(query_uri, [{"trial_id": "a"}])
    assert list(results.load(query_uri)["trial_id"]) == ["a"]
    lease = storage.Lease.acquire(query_uri)
    with pytest.raises(storage.LeaseHeld):
        storage.Lease.acquire(query_uri)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://{moto_s3.endpoint}")
    names = names_under(s3_uri)  # the same keys as without the query, none with a "?" in it
    assert {"deep", "blob.bin", "trials.parquet", "lease.json"} <= set(names), names
    assert not [n for n in names if "?" in n or "endpoint" in n], names
    assert storage.read_bytes(storage.join(s3_uri, "deep", "blob.bin")) == b"payload"
    lease.release()
    assert not storage.exists(storage.join(s3_uri, "lease.json"))


def test_search_state_round_trips_with_tensors(s3_uri):
    path = storage.join(s3_uri, "search_state.json")
    obj = {
        "rng": (1, 2, [3, (4,)]),
        "weights": torch.arange(6.0).reshape(2, 3),
        "fitness": np.array([0.5, -1.0], dtype=np.float32),
        7: "seven",
        "nan": float("nan"),
    }
    state.save(path, obj)
    back = state.load(path)
    assert back["rng"] == (1, 2, [3, (4,)]) and back[7] == "seven" and np.isnan(back["nan"])
    assert torch.equal(back["weights"], obj["weights"])
    assert np.array_equal(back["fitness"], obj["fitness"]) and back["fitness"].dtype == np.float32
    state.save(path, {"weights": torch.ones(2)})  # replaces the tensors file
    assert torch.equal(state.load(path)["weights"], torch.ones(2))
    tensors = [n for n in names_under(s3_uri) if ".tensors." in n]
    assert len(tensors) == 1, names_under(s3_uri)


def test_load_torch_reads_a_checkpoint_written_there(s3_uri):
    buffer = io.BytesIO()
    torch.save({"G": {"w": torch.arange(3.0)}, "step": 5}, buffer)
    path = storage.join(s3_uri, "trial_0", "checkpoint_000001", "state.pt")
    storage.write_bytes(path, buffer.getvalue())
    loaded = storage.load_torch(path)
    assert torch.equal(loaded["G"]["w"], torch.arange(3.0)) and loaded["step"] == 5


def test_an_unreadable_part_on_s3_is_named(s3_uri):
    results.append(s3_uri, [{"trial_id": "a"}])
    bad = storage.join(results.table_path(s3_uri), "part-00000000000000000001-bad.parquet")
    storage.write_bytes(bad, b"not parquet " * 10)
    with pytest.raises(results.TableError) as caught:
        results.load(s3_uri)
    assert str(caught.value).startswith(f"unreadable part {bad} (") and caught.value.path == bad
    df, skipped = results.load_table(s3_uri)
    assert list(df["trial_id"]) == ["a"] and [e.path for e in skipped] == [bad]


def test_a_checkpoint_uri_keeps_an_endpoint_given_in_the_query(moto_s3, s3_uri, monkeypatch):
    """What Ray Tune hands back (a Checkpoint: a pyarrow filesystem and a path) turns into a
    URI that reaches the same server again."""
    path = storage.join(s3_uri, "ckpt", "state.pt")
    storage.write_bytes(path, b"x")
    inner = storage.filesystem(path)[1].rsplit("/", 1)[0]
    by_env = SimpleNamespace(filesystem=storage.filesystem(s3_uri)[0], path=inner)
    assert storage.checkpoint_uri(by_env) == storage.join(s3_uri, "ckpt")  # env says where
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    fs = storage.filesystem(s3_uri + f"?endpoint_override={moto_s3.endpoint}&scheme=http")[0]
    uri = storage.checkpoint_uri(SimpleNamespace(filesystem=fs, path=inner))
    assert uri.endswith(f"/ckpt?endpoint_override={moto_s3.endpoint}&scheme=http"), uri
    assert storage.read_bytes(storage.join(uri, "state.pt")) == b"x"
