"""The Ray executor on a local instance: jobs ask for GPUs (a GPU Ray only counts) and run at normal priority."""

from __future__ import annotations

import importlib.util
import os

import pytest

from edgenas.core.errors import ConfigError
from edgenas.exec.executor import Job, RayExecutor, computes_on_cuda, make_executor

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray (the optional extra) is not installed"
)


@needs_ray
@pytest.mark.parametrize("nice", [0, pytest.param(4, marks=pytest.mark.slow)])  # ~15 s per Ray start
def test_ray_jobs_get_their_gpu_share_and_the_asked_priority(nice: int) -> None:
    # A local instance that advertises one GPU: Ray schedules by the count, no GPU is needed.
    ex = RayExecutor(workers=2, gpus_per_job=0.5, nice=nice, local_gpus=1)
    try:
        got = dict(ex.run([Job(f"j{i}", "pipeline_jobs:worker_report", {}) for i in range(2)]))
    finally:
        ex.close()
    for r in got.values():
        assert r["assigned"].get("GPU") == 0.5
        assert r["gpu_ids"] == ["0"] and r["cuda_visible"] == "0"
        # Ray's own default would be our niceness + 15
        assert r["nice"] == min(os.nice(0) + nice, 19)


def test_gpus_per_job_follows_the_compute_device() -> None:
    assert computes_on_cuda("cuda") and computes_on_cuda("cuda:1") and not computes_on_cuda("cpu")
    with pytest.raises(ConfigError, match="--address is for --executor ray"):
        make_executor("local", address="10.0.0.1:6379", gpus_per_job=1)


@needs_ray
def test_bad_ray_options_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"gpus_per_job must be >= 0"):
        RayExecutor(gpus_per_job=-1)
    with pytest.raises(ConfigError, match=r"nice must be in 0\.\.19"):
        RayExecutor(nice=25)
