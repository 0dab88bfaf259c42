"""Shared fixtures: one real local Ray instance (2 CPUs) for the whole session, and a cache
folder of the session's own (the metric extractor and reference statistics are built in it
once, so the suite neither depends on nor changes ~/.cache/raygan)."""

import os
import tempfile

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["RAYGAN_CACHE"] = tempfile.mkdtemp(prefix="raygan-test-cache-")
# Ray Train's controller polls its workers every 2 s: a tiny test round would spend about as
# long waiting to notice it ended as training (every Ray a test starts inherits this)
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
# lets a test ask for deterministic cuBLAS kernels on a GPU (read when CUDA starts)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The test networks are tiny: on a shared 2-core machine a second intra-op thread only
    adds contention (measured up to 100x slower for small convs under load)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_local(moto_s3):
    """A real ``ray.init(num_cpus=2)``, started once and shut down at the end. Its workers,
    and every process a test starts from then on, reach the moto S3 server (its environment
    is set first), so a search with ``--out s3://...`` runs on it as on a bucket."""
    import ray

    os.environ.update(moto_s3.env)
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def golden_search(ray_local, moto_s3, tmp_path_factory):
    """``golden_search(strategy)``: the ``--out`` of the strategy's tiny search of
    tests/test_golden.py, killed and resumed to its end, run once per session (the golden test
    compares it with the expected table; tests/test_eagan_search.py reads it as a user would)."""
    from test_golden import killed_and_resumed

    done: dict[str, str] = {}

    def search(strategy: str) -> str:
        if strategy not in done:
            tmp = tmp_path_factory.mktemp(f"golden-{strategy}")
            done[strategy] = killed_and_resumed(strategy, tmp, moto_s3.uri(tmp.name))
        return done[strategy]

    return search


@pytest.fixture
def deterministic_kernels():
    """Deterministic kernels for a test that asserts bitwise-equal training. Without them two
    identical runs already differ on a GPU (measured on an H200: cuDNN and cuBLAS pick
    nondeterministic kernels); on the CPU they change nothing."""
    import torch

    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


class MotoS3:
    """A moto S3 server on 127.0.0.1 (see the ``moto_s3`` fixture)."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint = endpoint  # "127.0.0.1:PORT"
        self.bucket = bucket
        self.env = {  # what pyarrow, boto3 and Ray's workers need to find it
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": f"http://{endpoint}",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def uri(self, prefix: str, *, endpoint_in_query: bool = False) -> str:
        """``s3://BUCKET/PREFIX``; with ``endpoint_in_query`` the endpoint rides in the URI
        (``?endpoint_override=127.0.0.1:PORT&scheme=http``), for code that cannot see the
        environment (credentials still come from it)."""
        uri = f"s3://{self.bucket}/{prefix.strip('/')}"
        if endpoint_in_query:
            uri += f"?endpoint_override={self.endpoint}&scheme=http"
        return uri


@pytest.fixture(scope="session")
def moto_s3():
    """One local S3 server (moto, over real HTTP) with one bucket, for the whole session.

    It sets no environment itself: the ``s3_uri`` fixture does, per test. To use it by hand,
    set ``moto_s3.env`` (``monkeypatch.setenv``) and take ``moto_s3.uri("some/prefix")``:
    pyarrow's S3FileSystem (so :mod:`raygan.storage` and Ray Tune's ``storage_path``) and
    boto3 find the server through ``AWS_ENDPOINT_URL_S3``. Ray worker processes see the
    environment only if Ray started after it was set, as ``ray_local`` does.
    """
    import boto3
    from moto import server as server_module  # in the [test] extra: missing is a failure

    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = MotoS3(f"{host}:{port}", "raygan-test")
    boto3.client(
        "s3",
        endpoint_url=f"http://{s3.endpoint}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=s3.bucket)
    yield s3
    server.stop()


@pytest.fixture
def s3_uri(moto_s3, monkeypatch, request):
    """A fresh ``s3://raygan-test/<test>-<random>`` prefix on the moto server, with the
    environment set (for this test only) so that pyarrow, boto3 and child processes reach it."""
    import re
    import uuid

    for name, value in moto_s3.env.items():
        monkeypatch.setenv(name, value)
    name = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name).strip("-")[:60]
    return moto_s3.uri(f"{name}-{uuid.uuid4().hex[:8]}")
