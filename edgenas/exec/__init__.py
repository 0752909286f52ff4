"""Executors: run independent jobs locally (process pool) or on Ray, behind one interface."""

from edgenas.exec.executor import EXECUTORS, Executor, Job, LocalExecutor, RayExecutor, make_executor

__all__ = ["EXECUTORS", "Executor", "Job", "LocalExecutor", "RayExecutor", "make_executor"]
