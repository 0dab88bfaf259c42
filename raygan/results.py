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
strategy           string          train | eagan | autogan | adversarialnas | random | tune
kind               string          trial | round (a shared round: its cost) | epoch
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
conditional        bool            class-conditional pair (G(z, y), projection D)
num_classes        int32           classes it is conditioned on (null: unconditional)
is, is_std         float64         Inception Score (10 splits) mean and std
fid, kid           float64         FID and KID (KID optional)
intra_fid          float64         conditional: mean over classes of each class's FID
class_accuracy     float64         conditional: share of samples classified as drawn
reward             float64         AutoGAN controller reward
entropy            float64         controller entropy, or architecture-weight entropy
baseline           float64         controller EMA baseline
g_params, d_params int64           parameter counts
rank               int32           Pareto rank at selection time (0 = front)
crowding           float64         crowding distance at selection time
budget_steps       int64           generator steps trained in this trial
wall_s             float64         wall time in seconds (a round's: the driver's, start-up in)
img_per_s          float64         real images through D per second
device             string          what trained it: the GPU's name, or ``cpu``
device_share       float64         the share of it held: a GPU fraction, or CPU cores
device_s           float64         device-seconds paid: wall_s x device_share
train_s            float64         seconds training
eval_s             float64         seconds scoring (IS/FID)
setup_s            float64         seconds building, loading data and weights
train_flops        int64           FLOPs trained (per kind of step, counted once, x steps)
status             string          ok | failed | diverged | stopped (by ASHA, at a rung)
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
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raygan import storage
from raygan.storage import filesystem

TABLE_NAME = "trials.parquet"

_GENOME = pa.list_(pa.list_(pa.int32()))
SCHEMA = pa.schema(
    [
        ("experiment", pa.string()),
        ("trial_id", pa.string()),
        ("strategy", pa.string()),
        ("kind", pa.string()),
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
        ("conditional", pa.bool_()),
        ("num_classes", pa.int32()),
        ("is", pa.float64()),
        ("is_std", pa.float64()),
        ("fid", pa.float64()),
        ("kid", pa.float64()),
        ("intra_fid", pa.float64()),
        ("class_accuracy", pa.float64()),
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
        ("device", pa.string()),
        ("device_share", pa.float64()),
        ("device_s", pa.float64()),
        ("train_s", pa.float64()),
        ("eval_s", pa.float64()),
        ("setup_s", pa.float64()),
        ("train_flops", pa.int64()),
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


class TableError(ValueError):
    """A part of the table that cannot be read; one line naming it (:attr:`path`)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


def table_path(experiment_dir: str) -> str:
    return storage.join(experiment_dir, TABLE_NAME)


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
    if not record.get("kind"):
        record["kind"] = "trial"
    return record


def append(experiment_dir: str, rows: Iterable[Mapping[str, Any]]) -> str | None:
    """Append rows to the experiment's table atomically; returns the part file written.

    Nothing existing is read: an unreadable part already there does not stop an append (the
    driver's own appends read the table first, and stop there)."""
    records = [to_record(r) for r in rows]
    if not records:
        return None
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(records, schema=SCHEMA), sink)
    name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    part = storage.join(table_path(experiment_dir), name)
    storage.write_bytes(part, sink.getvalue().to_pybytes())  # durable rename, or one upload
    return part if storage.is_uri(part) else filesystem(part)[1]


def append_once(out: str, rows: list[dict[str, Any]]) -> None:
    """Append the rows whose trial the table lacks: a driver killed after appending a
    boundary's rows but before saving its state replays that boundary without repeating one."""
    seen = set(load(out)["trial_id"])
    append(out, [r for r in rows if r["trial_id"] not in seen])


def load(path: str, *, skip_unreadable: bool = False) -> pd.DataFrame:
    """The table as a DataFrame with the documented columns, in append order.

    ``path`` is the experiment folder or its ``trials.parquet``. An experiment with no rows
    yet gives an empty frame with the right columns. A part that cannot be read (truncated,
    not Parquet) raises :class:`TableError` naming it, so that a resume or an append never
    goes on from a table missing rows unnoticed; ``skip_unreadable`` leaves such parts out
    (:func:`load_table` says which).
    """
    df, skipped = load_table(path)
    if skipped and not skip_unreadable:
        raise skipped[0]
    return df


def load_table(path: str) -> tuple[pd.DataFrame, list[TableError]]:
    """The readable rows (as :func:`load`) and one :class:`TableError` per part left out."""
    table = path if storage.basename(path) == TABLE_NAME else table_path(path)
    fs, root = filesystem(table)
    names = [n for n in storage.names(table) if n.startswith("part-") and n.endswith(".parquet")]
    tables, skipped = [], []
    for name in names:
        with fs.open_input_stream(f"{root}/{name}") as f:
            data = f.read()  # storage errors propagate: only the content can be unreadable
        try:
            tables.append(pq.read_table(pa.BufferReader(data), schema=SCHEMA))
        except (pa.ArrowException, OSError, ValueError) as err:
            skipped.append(_unreadable(storage.join(table, name), table, err))
    if not tables:
        return SCHEMA.empty_table().to_pandas(), skipped
    return pa.concat_tables(tables).to_pandas(), skipped


def _unreadable(part: str, table: str, err: BaseException) -> TableError:
    reason = " ".join(str(err).split()).replace(
        "Could not open Parquet input source '<Buffer>': ", ""
    )
    return TableError(
        f"unreadable part {part} ({reason or type(err).__name__}): move it out of {table} "
        "to go on without its rows",
        part,
    )


def extra(df: pd.DataFrame) -> pd.DataFrame:
    """The ``extra`` JSON column expanded into its own columns."""
    return pd.json_normalize(
        [json.loads(x) if isinstance(x, str) else {} for x in df["extra"]]
    ).set_index(df.index)
