"""Run independent jobs (train N archs, one search per device, one distill per device) in parallel.

One interface, two back ends: `LocalExecutor` (a pool of fresh Python processes on this
machine, the default) and `RayExecutor` (tasks on a Ray cluster, `--executor ray
[--address ...]`; Ray is the optional extra `edgenas[ray]`). A job names its function as
`"module:function"` plus JSON-able keyword arguments, so it pickles the same way to a
local process and to a Ray worker, and runs the same code in both: each job pins its
torch thread count first, which is what makes a result independent of the back end.

On a GPU cluster each Ray job asks for `gpus_per_job` GPUs (fractions share one GPU), so
Ray places it on a GPU and sets its CUDA_VISIBLE_DEVICES. Ray starts its workers at nice
15 by default, which on a loaded machine starves them; edgenas starts a local instance's
workers at `nice` (default 0: normal priority) instead. Job arguments carry absolute
paths: the run folder must be on storage every node mounts at the same path.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Protocol

from edgenas.core.errors import ConfigError

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    """One unit of independent work: `fn` ("module:function") called with `kwargs`."""

    key: str
    fn: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    threads: int = 1


def run_job(fn: str, kwargs: dict[str, Any], threads: int) -> Any:
    """Worker side: pin threads, then call the named function (the same in every back end)."""
    import torch

    torch.set_num_threads(threads)
    module, _, name = fn.partition(":")
    return getattr(importlib.import_module(module), name)(**kwargs)


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies (even by `kill -9`).

    Otherwise an orphaned worker would go on writing checkpoints into a run that the
    user is resuming in another process.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # no libc.so.6 (musl): the worker simply lacks the guard
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Executor(Protocol):
    """Runs jobs and yields `(key, result)` as each one finishes (in completion order)."""

    name: str
    workers: int

    def run(self, jobs: list[Job]) -> Iterator[tuple[str, Any]]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Jobs in `workers` fresh processes (spawn: no forked torch thread pools); inline for one worker."""

    name = "local"

    def __init__(self, workers: int = 2) -> None:
        if workers < 1:
            raise ConfigError(f"executor workers must be >= 1, got {workers}")
        self.workers = workers

    def run(self, jobs: list[Job]) -> Iterator[tuple[str, Any]]:
        if self.workers == 1 or len(jobs) == 1:
            yield from self._inline(jobs)
            return
        pool = ProcessPoolExecutor(
            min(self.workers, len(jobs)), mp_context=get_context("spawn"), initializer=_die_with_parent
        )
        pending: dict[Future, str] = {}
        try:
            for job in jobs:
                pending[pool.submit(run_job, job.fn, job.kwargs, job.threads)] = job.key
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    yield key, fut.result()
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=not pending, cancel_futures=True)

    def _inline(self, jobs: list[Job]) -> Iterator[tuple[str, Any]]:
        import torch

        before = torch.get_num_threads()
        try:
            for job in jobs:
                yield job.key, run_job(job.fn, job.kwargs, job.threads)
        finally:
            torch.set_num_threads(before)

    def close(self) -> None:
        return None


RAY_NICENESS_ENV = "RAY_worker_niceness"  # read by Ray's raylet when it starts a worker (default 15)


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


class RayExecutor:
    """Jobs as Ray tasks; `address=None` starts a local Ray instance, else joins that cluster.

    `gpus_per_job`: GPUs each job asks Ray for (0: CPU jobs; 0.5: two jobs share a GPU).
    `nice`: niceness added to a local instance's workers (Ray's default is 15; a cluster's
    workers get what its nodes were started with: `RAY_worker_niceness=0 ray start ...`).
    `local_gpus`: GPUs a local instance advertises (default: those Ray detects).
    """

    name = "ray"

    def __init__(
        self,
        workers: int = 2,
        address: str | None = None,
        *,
        gpus_per_job: float = 0.0,
        nice: int = 0,
        local_gpus: float | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'edgenas[ray]' (or pip install ray)") from None
        if gpus_per_job < 0:
            raise ConfigError(f"executor.gpus_per_job must be >= 0, got {gpus_per_job}")
        if not 0 <= nice <= 19:
            raise ConfigError(f"executor.nice must be in 0..19, got {nice}")
        from edgenas.core.precision import switch_env

        self.ray = ray
        self.workers = workers
        self.address = address
        self.gpus_per_job = float(gpus_per_job)
        self.nice = nice
        self._started = False
        if not ray.is_initialized():
            env_vars = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **switch_env()}
            env = {"env_vars": env_vars}
            try:
                if address:
                    ray.init(address=address, runtime_env=env, log_to_driver=False)
                else:
                    with _env(RAY_NICENESS_ENV, str(nice)):  # the raylet started here reads it
                        ray.init(
                            num_cpus=max(workers, 1),
                            num_gpus=local_gpus,
                            include_dashboard=False,
                            runtime_env=env,
                            log_to_driver=False,
                            configure_logging=False,
                        )
            except ConnectionError as exc:
                raise ConfigError(f"--address {address}: cannot join a Ray cluster there ({exc})") from None
            self._started = True
        self._remote = ray.remote(run_job)

    def run(self, jobs: list[Job]) -> Iterator[tuple[str, Any]]:
        pending = {
            self._remote.options(num_cpus=job.threads, num_gpus=self.gpus_per_job).remote(
                job.fn, job.kwargs, job.threads
            ): job.key
            for job in jobs
        }
        try:
            while pending:
                done, _ = self.ray.wait(list(pending), num_returns=1)
                for ref in done:
                    key = pending.pop(ref)
                    yield key, self.ray.get(ref)
        finally:
            for ref in pending:
                self.ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False


def make_executor(
    kind: str = "local",
    *,
    workers: int = 2,
    address: str | None = None,
    gpus_per_job: float | None = None,
    compute: str = "cpu",
    nice: int = 0,
) -> Executor:
    """The executor a user asked for (`--executor local|ray`).

    Ray jobs ask for `gpus_per_job` GPUs; None means one GPU each when the jobs compute on
    CUDA (`compute` cuda, or auto where this machine has CUDA), else none.
    """
    if kind == "local":
        if address:
            raise ConfigError("--address is for --executor ray (a Ray cluster); the local executor takes none")
        return LocalExecutor(workers)
    if kind == "ray":
        gpus = gpus_per_job if gpus_per_job is not None else float(computes_on_cuda(compute))
        return RayExecutor(workers, address, gpus_per_job=gpus, nice=nice)
    raise ConfigError(f"--executor {kind!r}: choose one of {', '.join(EXECUTORS)}")


def computes_on_cuda(compute: str) -> bool:
    """Whether jobs given `compute` (auto|cpu|cuda[:i]) will run on a GPU."""
    compute = (compute or "auto").lower()
    if compute.startswith("cuda"):
        return True
    if compute == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def threads_per_job(workers: int) -> int:
    """Split this machine's cores evenly between parallel jobs (at least one each)."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def run_all(executor: Executor, jobs: list[Job], on_result: Callable[[str, Any], None]) -> None:
    """Run `jobs`, handing each result to `on_result` as it arrives (so it can be saved at once)."""
    for key, result in executor.run(jobs):
        on_result(key, result)
