"""Many nodes on one machine, shared storage, and the cluster file.

Multi-node: ``ray.cluster_utils.Cluster`` nodes of 1 CPU each (``raygan.cluster.
local_cluster``), so one trial or one Train worker fills a node and anything that runs three at
once must use all three. A Cluster needs its own head, which the session's ``ray_local`` can't
be, so the scenarios run in one child process (this file run as a script, with a private
``RAY_TMPDIR`` and a hard timeout), started once per module; each test checks its part of the
JSON the child writes after every scenario:

- ``train``: ``raygan.supernet.train_round`` (a tiny supernet round, gloo DDP) with 3 workers;
- ``generation``: P=4 checkpointing trials of one Tune run; the first three run together, so
  on all three nodes; a worker node is removed while one of them runs there. Afterwards the
  driver appends each trial's row, built from its ``ray.tune.Result``, to a raygan trial table,
  as every search does at a boundary.

Storage: the trial table on ``file://`` and fsspec ``memory://`` URIs with two writers, and
``check_storage``'s one-line error for storage that can't be written. ``cluster.yaml``: the Ray
autoscaler's own validation.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import pytest
import yaml
from procs import outcome
from ray.tune import Callback

ROOT = Path(__file__).resolve().parents[1]
NODES = 3
CHILD_TIMEOUT_S = 240
G = "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3"
D = "autogan_d:"
# A removed node is declared dead after a few missed health checks, not Ray's default 30 s.
HEAD_SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 4,
}


# ----- cluster.yaml -----------------------------------------------------------------------------
def test_cluster_yaml_passes_ray_validation_and_keeps_secrets_and_dashboard_private():
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = (ROOT / "cluster.yaml").read_text()
    config = yaml.safe_load(text)
    # what `ray up` does before it talks to AWS: fill in the provider's defaults, then check
    # the result against the autoscaler's JSON schema and its own rules
    validate_config(prepare_config(config))
    with pytest.raises(Exception, match="max_worker"):  # the validation does catch a typo
        validate_config(prepare_config({**config, "max_worker": 4}))

    assert config["provider"]["type"] == "aws"
    head = config["head_node_type"]
    types = config["available_node_types"]
    workers = [t for t in types if t != head]
    assert workers and all(types[t]["max_workers"] > types[t]["min_workers"] for t in workers)
    assert "GPU" not in types[head]["resources"]
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "raygan" in setup
    lowered = text.lower()
    for secret in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "akia"):
        assert secret not in lowered
    assert "ssh_private_key" not in config.get("auth", {})


def _policy(name: str) -> list[dict]:
    """The statements of an IAM policy in docs/, each with Action and Resource as lists."""
    statements = json.loads((ROOT / "docs" / name).read_text())["Statement"]
    for st in statements:
        for field in ("Action", "Resource"):
            if isinstance(st.get(field), str):
                st[field] = [st[field]]
    return statements


def _check_s3_statements(statements: list[dict], bucket: str, prefix: str) -> None:
    """S3 objects only under the prefix; listing only under it, or with no prefix at all
    (HeadBucket, which pyarrow's create_dir sends: see docs/cluster.md)."""
    s3 = [st for st in statements if any(a.startswith("s3:") for a in st["Action"])]
    objects = [st for st in s3 if st["Action"] != ["s3:ListBucket"]]
    listing = [st for st in s3 if st["Action"] == ["s3:ListBucket"]]
    assert {a for st in objects for a in st["Action"]} >= {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
    }
    assert all(r == f"{bucket}/{prefix}*" for st in objects for r in st["Resource"])
    assert "Condition" not in str(objects) and len(listing) == 2
    conditions = []
    for st in listing:
        assert st["Resource"] == [bucket] and set(st["Condition"]) <= {"StringLike", "Null"}
        conditions.append(st["Condition"])
    assert {"StringLike": {"s3:prefix": [f"{prefix}*"]}} in conditions
    assert {"Null": {"s3:prefix": "true"}} in conditions


def test_cluster_yaml_least_privilege_pinned_install_token_auth_and_ssh_from_one_cidr(
    monkeypatch,
):
    """The four properties of docs/cluster.md's Security section, read from the file and the
    policies as data (no AWS account is involved); Ray's own launcher code shows that `ray up`
    then creates neither an IAM role nor a security group of its own."""
    import copy
    import re

    from ray.autoscaler._private.aws import config as aws_config
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = (ROOT / "cluster.yaml").read_text()
    config = yaml.safe_load(text)
    validate_config(prepare_config(copy.deepcopy(config)))
    head = config["head_node_type"]
    types = config["available_node_types"]
    workers = [t for t in types if t != head]
    nodes = {t: types[t]["node_config"] for t in types}
    docs = (ROOT / "docs" / "cluster.md").read_text()

    # 1. IAM: a profile per node type, not Ray's default, each with a least-privilege policy
    profiles = {t: nodes[t]["IamInstanceProfile"]["Name"] for t in types}
    assert "ray-autoscaler-v1" not in profiles.values()
    (worker_profile,) = {profiles[t] for t in workers}
    assert profiles[head] != worker_profile
    bucket, prefix = "arn:aws:s3:::YOUR_BUCKET", "raygan/"
    worker = _policy("iam-worker-policy.json")
    head_policy = _policy("iam-head-policy.json")
    for statements in (worker, head_policy):
        actions = [a for st in statements for a in st["Action"]]
        assert all(st["Effect"] == "Allow" for st in statements)
        assert not [a for a in actions if "*" in a], "no wildcard actions"
        _check_s3_statements(statements, bucket, prefix)
    assert all(a.startswith("s3:") for st in worker for a in st["Action"])
    by_action = {a: st for st in head_policy for a in st["Action"] if not a.startswith("s3:")}
    assert set(by_action) == {
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceTypes",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
        "iam:PassRole",
    }
    assert by_action["iam:PassRole"]["Resource"] == [
        f"arn:aws:iam::ACCOUNT_ID:role/{worker_profile}"
    ]
    assert by_action["ec2:TerminateInstances"]["Condition"] == {
        "StringEquals": {"ec2:ResourceTag/ray-cluster-name": config["cluster_name"]}
    }
    assert by_action["ec2:RunInstances"]["Condition"] == {
        "StringEquals": {"aws:RequestedRegion": config["provider"]["region"]}
    }
    json.loads((ROOT / "docs" / "iam-ec2-trust.json").read_text())
    for name in ("iam-head-policy.json", "iam-worker-policy.json", "iam-ec2-trust.json"):
        assert f"docs/{name}" in docs or f"({name})" in docs
    assert "aws iam create-instance-profile" in docs and "add-role-to-instance-profile" in docs

    # 2. a pinned install that upgrades nothing the image has
    setup = " ".join(config["setup_commands"])
    assert not re.search(r"(^|\s)(-U|--upgrade)(\s|$)", setup)
    refs = re.findall(r"raygan @ git\+\S+?@([^\s\"]+)", setup)
    assert refs and all(r == "COMMIT_SHA" or re.fullmatch(r"[0-9a-f]{40}", r) for r in refs)
    constraints = re.search(r"pip install -c (\S+)", setup).group(1)
    assert re.search(rf"grep [^>]*torch[^>]*> {re.escape(constraints)}", setup)

    # 3. Ray token authentication on every node, the token from the user's machine
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    assert "RAY_AUTH_TOKEN" not in text and "export RAY_AUTH_MODE=token" in docs

    # 4. SSH from one CIDR: every node type names the user's group, so Ray creates none (the
    # one it would create lets SSH in from anywhere, whatever provider.security_group adds)
    groups = {tuple(nodes[t]["SecurityGroupIds"]) for t in types}
    assert len(groups) == 1 and "security_group" not in config["provider"]
    assert "0.0.0.0/0" not in json.dumps(config)  # (the comments may say why)
    default = aws_config._create_default_inbound_rules(set(), [])
    assert {"CidrIp": "0.0.0.0/0"} in [r for rule in default for r in rule.get("IpRanges", [])]
    ingress = [line for line in docs.splitlines() if "--port 22" in line]
    assert ingress and all("--cidr YOUR_CIDR" in line for line in ingress)
    assert "--source-group $SG" in docs

    def no_aws(*args, **kwargs):
        raise AssertionError("the launcher asked AWS to configure what cluster.yaml sets")

    monkeypatch.setattr(aws_config, "_resource", no_aws)
    monkeypatch.setattr(aws_config, "_client", no_aws)
    prepared = prepare_config(copy.deepcopy(config))
    assert aws_config._configure_iam_role(copy.deepcopy(prepared)) == prepared
    assert aws_config._configure_security_group(copy.deepcopy(prepared)) == prepared


# ----- shared storage ---------------------------------------------------------------------------
def _two_writers(experiment: str, rounds: int = 15) -> None:
    """Two threads append one row each, released together every round."""
    from raygan import results

    gate = threading.Barrier(2)

    def writer(name: str) -> None:
        for i in range(rounds):
            gate.wait()
            results.append(experiment, [{"trial_id": f"{name}-{i}", "individual": i}])

    threads = [threading.Thread(target=writer, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_trial_table_on_a_uri_keeps_every_row_of_two_writers(tmp_path, scheme):
    import pandas as pd
    import pyarrow.fs as pafs

    from raygan import results

    if scheme == "file":  # pyarrow's own filesystem
        experiment = f"file://{tmp_path}/exp"
    else:  # fsspec's in-memory filesystem, through pyarrow.fs.PyFileSystem
        experiment = f"memory://raygan-{tmp_path.name}/exp"
        assert isinstance(results.filesystem(experiment)[0], pafs.PyFileSystem)
    assert results.load(experiment).empty
    results.append(experiment, [{"trial_id": "first", "is": 2.0, "g_genome": [[1, 2]]}])
    _two_writers(experiment)
    df = results.load(experiment)
    assert len(df) == 31 and df["trial_id"].is_unique
    assert df["trial_id"].iloc[0] == "first" and df["is"].iloc[0] == 2.0
    assert {f"{n}-{i}" for n in "ab" for i in range(15)} <= set(df["trial_id"])
    # pandas reads the same URI directly
    assert len(pd.read_parquet(results.table_path(experiment))) == 31


def test_check_storage_passes_writable_storage_and_leaves_nothing_behind(tmp_path):
    from raygan.cluster import check_storage

    for where in (str(tmp_path / "a"), f"file://{tmp_path}/b", f"memory://{tmp_path.name}/c"):
        check_storage(where)
    assert os.listdir(tmp_path / "a") == [] and os.listdir(tmp_path / "b") == []


def test_unreachable_storage_is_one_clear_error_naming_the_uri(tmp_path, monkeypatch):
    from raygan.cluster import check_storage
    from raygan.errors import UsageError

    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookups here
    (tmp_path / "file").write_text("not a folder")
    cases = {
        str(tmp_path / "file" / "exp"): "",  # a place nothing can be written to
        "nosuch://bucket/exp": "",
        "s3://raygan-no-such-bucket-4f7c1e/exp": "credentials",  # no credentials, no network
    }
    for uri, hint in cases.items():
        with pytest.raises(UsageError) as caught:
            check_storage(uri, timeout_s=40)
        message = str(caught.value)
        assert uri in message and "\n" not in message and hint in message, message


# ----- the child process ------------------------------------------------------------------------
def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def train(out: Path) -> dict:
    from raygan import supernet

    ranks = out / "train-ranks"
    ranks.mkdir()
    original = supernet.train_loop_per_worker

    def recording_loop(config: dict) -> None:  # the real loop, after noting where it runs
        import ray.train

        rank = ray.train.get_context().get_world_rank()
        (ranks / str(rank)).write_text(ray.get_runtime_context().get_node_id())
        original(config)

    supernet.train_loop_per_worker = recording_loop
    spec = supernet.RoundSpec(
        g_space="nas_cell_g",
        d=D,
        paths=[G],
        gf=8,
        df=8,
        steps=2,
        n_critic=1,
        g_batch=6,
        d_batch=6,
        max_images=60,
    )
    result = supernet.train_round(
        spec, name="round", storage_path=str(out / "train"), workers=NODES, max_failures=0
    )
    return {
        "state_exists": os.path.exists(result.state),
        "round_step": result.metrics["round_step"],
        "worker_nodes": {p.name: p.read_text() for p in ranks.iterdir()},
    }


STEPS, STEP_S = 6, 0.4


def member(config: dict) -> None:
    """A generation member: STEPS steps with a checkpoint after each; a retry resumes from the
    last one. The first ``together`` members wait (up to 60 s) until all of them have started,
    so that they provably run at the same time, on as many nodes as there are of them."""
    import ray
    from ray import tune

    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = int(Path(d, "step").read_text())
    node = ray.get_runtime_context().get_node_id()
    trial_id = tune.get_context().get_trial_id()
    attempts = Path(config["attempts"])
    (attempts / f"{trial_id}.{start}").write_text(node)
    _wait_for(
        lambda: len(os.listdir(attempts)) >= config["together"], 60, "members never overlapped"
    )
    for step in range(start, STEPS):
        time.sleep(STEP_S)
        with tempfile.TemporaryDirectory() as d:
            Path(d, "step").write_text(str(step + 1))
            metrics = {
                "step": step + 1,
                "resumed_from": start,
                "node_id": node,
                "status": "ok",
                "is": 1.0 + step,
                "fid": 100.0 - step,
                "done": step + 1 == STEPS,
            }
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


class CheckpointLog(Callback):
    """Driver side: a line per checkpoint Tune has taken in (trial, node, step), to a file."""

    def __init__(self, path: str):
        self.path = path

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        last = trial.last_result
        with open(self.path, "a") as f:
            f.write(f"{trial.trial_id} {last.get('node_id')} {last.get('step')}\n")


def generation(out: Path, cluster) -> dict:
    """P=4 members on the 3 nodes, written to a raygan trial table; once Tune holds a second
    checkpoint of a member running on a worker node, that node is removed."""
    from ray import tune

    from raygan import results
    from raygan.results import append_once
    from raygan.trainable import row_fields

    attempts, checkpoints = out / "attempts", out / "checkpoints.log"
    attempts.mkdir()
    checkpoints.touch()
    experiment = str(out / "generation")
    workers = {n.node_id: n for n in cluster.worker_nodes}
    removed: dict = {}

    def busy_worker():
        for line in checkpoints.read_text().splitlines():
            trial_id, node, step = line.split()
            if node in workers and int(step) >= 2:
                return trial_id, node
        return None

    def remove_a_busy_worker() -> None:
        _wait_for(lambda: busy_worker() is not None, 90, "no member reached step 2 on a worker")
        trial_id, node = busy_worker()
        cluster.remove_node(workers[node])
        removed.update(trial_id=trial_id, node=node)

    killer = threading.Thread(target=remove_a_busy_worker, daemon=True)
    killer.start()
    tuner = tune.Tuner(
        tune.with_resources(member, {"cpu": 1}),
        param_space={
            "g": G,
            "d": D,
            "attempts": str(attempts),
            "together": NODES,
            "row": tune.grid_search([{"individual": i, "generation": 1} for i in range(4)]),
        },
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=str(out / "tune"),
            name="generation",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=2),
            callbacks=[CheckpointLog(str(checkpoints))],
        ),
    )
    grid = tuner.fit()
    killer.join(1)
    # the driver's path: each trial's row from its Result, appended once the run is over
    rows = [
        results.row(row_fields(outcome(r)), experiment="generation", strategy="eagan") for r in grid
    ]
    append_once(experiment, rows)
    table = results.load(experiment)
    return {
        "removed": removed,
        "attempts": {p.name: p.read_text() for p in attempts.iterdir()},
        "trials": {
            r.metrics["trial_id"]: {
                "steps": r.metrics.get("step"),
                "resumed_from": r.metrics.get("resumed_from"),
                "node_id": r.metrics.get("node_id"),
            }
            for r in grid
            if r.metrics
        },
        "errors": grid.num_errors,
        "table_trial_ids": table["trial_id"].tolist(),
        "table_status": table["status"].tolist(),
        "table_individuals": table["individual"].tolist(),
        "table_checkpoint_steps": {
            row.trial_id: Path(row.checkpoint, "step").read_text() if row.checkpoint else None
            for row in table.itertuples()
        },
    }


def run_scenarios(out: Path) -> None:
    from raygan.cluster import local_cluster

    report: dict = {}
    path = out / "scenarios.json"
    started = time.perf_counter()
    with local_cluster(NODES, cpus_per_node=1, _system_config=HEAD_SYSTEM_CONFIG) as cluster:
        import ray

        report["nodes"] = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        report["startup_s"] = time.perf_counter() - started
        for name, scenario in (("train", train), ("generation", generation)):
            began = time.perf_counter()
            try:
                args = (out, cluster) if name == "generation" else (out,)
                report[name] = scenario(*args)
            except Exception:
                report[name] = {"exception": traceback.format_exc()}
            report[name]["wall_s"] = time.perf_counter() - began
            path.write_text(json.dumps(report, indent=1))
        began = time.perf_counter()
    print(f"cluster shut down in {time.perf_counter() - began:.1f} s", flush=True)


# ----- the tests --------------------------------------------------------------------------------
def _kill_leftovers(marker: str) -> None:
    """Ray processes the child started (their command lines name its private RAY_TMPDIR)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)


def _run_child(out: Path, timeout_s: float) -> dict:
    """This file as a script in a child process: its report, with the log's tail."""
    ray_tmp = tempfile.mkdtemp(prefix="rgc", dir="/tmp")  # short: Ray's socket paths are long
    env = {
        **os.environ,
        "RAY_TMPDIR": ray_tmp,
        "RAY_USAGE_STATS_ENABLED": "0",
        # one process less per Train run; spot preemption is not what these tests are about
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    }
    env.pop("RAY_ADDRESS", None)
    log = out / "child.log"
    with open(log, "wb") as sink:
        child = subprocess.Popen(
            [sys.executable, __file__, str(out)],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        finally:
            _kill_leftovers(ray_tmp)
            shutil.rmtree(ray_tmp, ignore_errors=True)
    path = out / "scenarios.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report["log_tail"] = log.read_text(errors="replace")[-3000:]
    report["returncode"] = child.returncode
    return report


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory) -> dict:
    """The child's report. A cluster that did not come up at all (Ray gives a node 30 s to
    register, which a 2-core machine under heavy load can miss) is tried once more while
    enough of the time limit is left; a scenario that failed is never retried."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    report: dict = {}
    for attempt in range(2):
        left = deadline - time.monotonic()
        if attempt and ("nodes" in report or left < 90):
            break
        report = _run_child(tmp_path_factory.mktemp("cluster"), left)
    return report


def _part(report: dict, name: str) -> dict:
    assert name in report, f"scenario {name} never finished; child log:\n{report['log_tail']}"
    part = report[name]
    assert "exception" not in part, part["exception"]
    return part


def test_trials_of_one_tune_run_spread_over_all_nodes(scenarios):
    assert len(scenarios.get("nodes", [])) == NODES, scenarios["log_tail"]
    part = _part(scenarios, "generation")
    first_attempts = {k: v for k, v in part["attempts"].items() if k.endswith(".0")}
    assert len(first_attempts) == 4
    assert set(first_attempts.values()) == set(scenarios["nodes"])


def test_supernet_round_runs_one_train_worker_per_node(scenarios):
    part = _part(scenarios, "train")
    assert part["state_exists"] and part["round_step"] == 2
    assert sorted(part["worker_nodes"]) == ["0", "1", "2"]
    assert set(part["worker_nodes"].values()) == set(scenarios["nodes"])


def test_losing_a_node_mid_generation_retries_from_checkpoint_and_keeps_the_table(scenarios):
    part = _part(scenarios, "generation")
    removed, trials = part["removed"], part["trials"]
    assert removed, "no node was removed"
    assert part["errors"] == 0 and len(trials) == 4
    assert all(t["steps"] == STEPS for t in trials.values())
    victim = trials[removed["trial_id"]]
    assert victim["resumed_from"] >= 2  # retried from its checkpoint, not from the start
    assert victim["node_id"] != removed["node"]
    # the generation's table: one ok row per member, none lost, none twice
    assert sorted(part["table_trial_ids"]) == sorted(trials)
    assert sorted(part["table_individuals"]) == [0, 1, 2, 3]
    assert set(part["table_status"]) == {"ok"}
    # each row points at its trial's last checkpoint, the one taken after the last step
    assert part["table_checkpoint_steps"] == {t: str(STEPS) for t in trials}


if __name__ == "__main__":
    print(f"child started at {time.time():.1f}", flush=True)
    run_scenarios(Path(sys.argv[1]))
