"""The experiment's trial table: one fixed Arrow schema, atomic appends, pandas on load.

Layout: ``<experiment>/trials.parquet`` is a Parquet *dataset directory*; every append writes
one new part file into it. A part is written to a temporary name and renamed into place (on
object stores a single PUT is already atomic), so a reader never sees a partial table, two
writers never overwrite each other, and a search killed at any moment keeps every row it had
appended. ``pd.read_parquet(".../trials.parquet")`` reads it directly; :func:`load` does the
same with the schema applied and rows in append order.

Paths may be local or a URI: any scheme pyarrow's filesystems know (``s3://``, ``gs://``,
``hdfs://``, ``file://``), else any fsspec knows (``memory://``, ``az://``...; through
``pyarrow.fs.PyFileSystem``), so a cluster's table can live on shared object storage.

Columns (every strategy writes the same schema; what does not apply is null):

=================  ==============  ======================================================
column             type            meaning
=================  ==============  ======================================================
experiment         string          experiment name (the folder name)
trial_id           string          Tune trial id, or a generated id outside Tune
strategy           string          train | eagan | autogan | adversarialnas
stage              int32           EAGAN stage (1, 2) or AutoGAN MLAS stage (0, 1, 2)
generation         int32           EAGAN generation, AutoGAN search iteration, epoch
step               int32           AutoGAN controller step
individual         int64           id of the individual within the search
parents            list<int64>     ids of its parents (NSGA-II)
g_genotype         string          canonical generator genotype (``space:..``)
g_genome           list<list<i32>> the same as nested ints
d_genotype         string          canonical discriminator genotype
d_genome           list<list<i32>> the same as nested ints
gf, df             int32           generator / discriminator widths
resolution         int32           image size in pixels
dataset            string          dataset name
is, is_std         float64         Inception Score (10 splits) mean and std
fid, kid           float64         FID and KID (KID optional)
reward             float64         AutoGAN controller reward
entropy            float64         controller entropy, or architecture-weight entropy
baseline           float64         controller EMA baseline
g_params, d_params int64           parameter counts
rank               int32           Pareto rank at selection time (0 = front)
crowding           float64         crowding distance at selection time
budget_steps       int64           generator steps trained in this trial
wall_s             float64         trial wall time in seconds
img_per_s          float64         real images through D per second
status             string          ok | failed | diverged
error              string          what went wrong, when status is not ok
checkpoint         string          where the trial's checkpoint is
inherited_from     string          checkpoint whose weights the trial started from
seed               int64           the trial's seed
extractor          string          feature extractor behind IS/FID (never compare across)
eval_samples       int32           samples behind IS/FID
finished_at        timestamp[ms]   when the row was written (UTC)
extra              string          JSON object with anything strategy-specific
=================  ==============  ======================================================
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raygan.storage import filesystem

TABLE_NAME = "trials.parquet"

_GENOME = pa.list_(pa.list_(pa.int32()))
SCHEMA = pa.schema(
    [
        ("experiment", pa.string()),
        ("trial_id", pa.string()),
        ("strategy", pa.string()),
        ("stage", pa.int32()),
        ("generation", pa.int32()),
        ("step", pa.int32()),
        ("individual", pa.int64()),
        ("parents", pa.list_(pa.int64())),
        ("g_genotype", pa.string()),
        ("g_genome", _GENOME),
        ("d_genotype", pa.string()),
        ("d_genome", _GENOME),
        ("gf", pa.int32()),
        ("df", pa.int32()),
        ("resolution", pa.int32()),
        ("dataset", pa.string()),
        ("is", pa.float64()),
        ("is_std", pa.float64()),
        ("fid", pa.float64()),
        ("kid", pa.float64()),
        ("reward", pa.float64()),
        ("entropy", pa.float64()),
        ("baseline", pa.float64()),
        ("g_params", pa.int64()),
        ("d_params", pa.int64()),
        ("rank", pa.int32()),
        ("crowding", pa.float64()),
        ("budget_steps", pa.int64()),
        ("wall_s", pa.float64()),
        ("img_per_s", pa.float64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("checkpoint", pa.string()),
        ("inherited_from", pa.string()),
        ("seed", pa.int64()),
        ("extractor", pa.string()),
        ("eval_samples", pa.int32()),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
        ("extra", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)


def row(fields: Mapping[str, Any], *, experiment: str, strategy: str) -> dict[str, Any]:
    """THE row builder: a trial's (or an epoch's) fields plus the strategy's own columns, under
    this experiment; what the schema lacks goes to ``extra`` (:func:`to_record`)."""
    return {"experiment": experiment, "strategy": strategy, **fields}


def table_path(experiment_dir: str) -> str:
    return experiment_dir.rstrip("/") + "/" + TABLE_NAME


def _clean(value: Any) -> Any:
    """NaN becomes null so that no NaN ever reads as a score (infinity is kept: a boundary
    point's crowding distance is infinite)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def to_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """Fit one row to the schema: unknown keys go into ``extra`` (JSON), missing ones are null."""
    record = {c: _clean(row.get(c)) for c in COLUMNS if c not in ("extra", "finished_at")}
    unknown = {k: v for k, v in row.items() if k not in COLUMNS}
    extra = dict(json.loads(row["extra"])) if isinstance(row.get("extra"), str) else {}
    extra.update(unknown)
    record["extra"] = json.dumps(extra, default=str, sort_keys=True) if extra else None
    record["finished_at"] = row.get("finished_at") or pd.Timestamp.now(tz="UTC")
    if not record.get("status"):
        record["status"] = "ok"
    return record


def append(experiment_dir: str, rows: Iterable[Mapping[str, Any]]) -> str | None:
    """Append rows to the experiment's table atomically; returns the part file written."""
    records = [to_record(r) for r in rows]
    if not records:
        return None
    table = pa.Table.from_pylist(records, schema=SCHEMA)
    fs, root = filesystem(table_path(experiment_dir))
    fs.create_dir(root, recursive=True)
    name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    final = f"{root}/{name}"
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{root}/.{name}.tmp"
        pq.write_table(table, tmp, filesystem=fs)
        os.replace(tmp, final)
    else:
        pq.write_table(table, final, filesystem=fs)  # one PUT: atomic on object stores
    return final


def load(path: str) -> pd.DataFrame:
    """The table as a DataFrame with the documented columns, in append order.

    ``path`` is the experiment folder or its ``trials.parquet``. An experiment with no rows
    yet gives an empty frame with the right columns.
    """
    if not path.rstrip("/").endswith(TABLE_NAME):
        path = table_path(path)
    fs, root = filesystem(path)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return SCHEMA.empty_table().to_pandas()
    parts = sorted(
        f.path
        for f in fs.get_file_info(pafs.FileSelector(root))
        if f.base_name.startswith("part-") and f.base_name.endswith(".parquet")
    )
    if not parts:
        return SCHEMA.empty_table().to_pandas()
    tables = [pq.read_table(p, filesystem=fs, schema=SCHEMA) for p in parts]
    return pa.concat_tables(tables).to_pandas()


def extra(df: pd.DataFrame) -> pd.DataFrame:
    """The ``extra`` JSON column expanded into its own columns."""
    return pd.json_normalize(
        [json.loads(x) if isinstance(x, str) else {} for x in df["extra"]]
    ).set_index(df.index)
