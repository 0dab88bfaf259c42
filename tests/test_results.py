"""The trial table: schema, atomic appends, nothing lost, NaN never stored as a score."""

import math
import os
import threading

import pandas as pd
import pyarrow.parquet as pq

from raygan import results


def test_append_and_load_keep_schema_and_order(tmp_path):
    exp = str(tmp_path / "exp")
    assert list(results.load(exp).columns) == list(results.COLUMNS)
    results.append(
        exp,
        [{"trial_id": "a", "is": 2.5, "g_genome": [[1, 2], [3]], "parents": [1, 2], "custom": 7}],
    )
    results.append(exp, [{"trial_id": "b", "fid": float("nan"), "status": "failed"}])
    df = results.load(exp)
    assert list(df["trial_id"]) == ["a", "b"]
    assert list(df.columns) == list(results.COLUMNS)
    assert df.loc[0, "is"] == 2.5 and df.loc[0, "status"] == "ok"
    assert [list(x) for x in df.loc[0, "g_genome"]] == [[1, 2], [3]]
    assert pd.isna(df.loc[1, "fid"])  # NaN is stored as null, never as a score
    assert results.extra(df).loc[0, "custom"] == 7
    # pandas reads the dataset folder directly too
    assert len(pd.read_parquet(results.table_path(exp))) == 2


def test_concurrent_appends_lose_no_row(tmp_path):
    exp = str(tmp_path / "exp")

    def writer(k):
        for i in range(20):
            results.append(exp, [{"trial_id": f"{k}-{i}", "is": float(i)}])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    df = results.load(exp)
    assert len(df) == 80 and df["trial_id"].is_unique


def test_no_partial_part_is_ever_visible(tmp_path):
    exp = str(tmp_path / "exp")
    path = results.append(exp, [{"trial_id": "a"}])
    names = os.listdir(results.table_path(exp))
    assert names == [os.path.basename(path)]
    assert pq.read_table(path).num_rows == 1
    # a leftover temporary file from a killed writer is ignored by load
    with open(os.path.join(results.table_path(exp), ".part-x.parquet.tmp"), "wb") as f:
        f.write(b"junk")
    assert len(results.load(exp)) == 1
    assert math.isnan(results.load(exp)["is"].iloc[0])
