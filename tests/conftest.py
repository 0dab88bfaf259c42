"""Shared fixtures: one real local Ray instance (2 CPUs) for the whole session, and a cache
folder of the session's own (the metric extractor and reference statistics are built in it
once, so the suite neither depends on nor changes ~/.cache/raygan)."""

import os
import tempfile

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["RAYGAN_CACHE"] = tempfile.mkdtemp(prefix="raygan-test-cache-")
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
def ray_local():
    """A real ``ray.init(num_cpus=2)``, started once and shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def deterministic_kernels():
    """Deterministic kernels for a test that asserts bitwise-equal training. Without them two
    identical runs already differ on a GPU (measured on an H200: cuDNN and cuBLAS pick
    nondeterministic kernels); on the CPU they change nothing."""
    import torch

    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)
