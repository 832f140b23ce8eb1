"""Where independent pieces of training run: in this process, one after another (``serial``, the
default), or as Ray tasks (``ray``) on a local Ray started on demand or on an existing cluster.

One interface, two methods:

- ``share(value)``: put a large read-only value (the feature panel, a search's training rows) where
  the tasks read it, once: Ray's object store (numpy arrays are read in place, not copied per task);
  in this process, the value itself.
- ``map(fn, items, shared=handle)``: ``[fn(shared_value, item) for item in items]``, results in the
  order of ``items`` whatever order they finish in. ``fn`` is a module-level function (Ray ships it
  by reference). The results do not depend on the executor: every task gets its own seed from its
  item, never from the order it ran in.

Failures: a Ray worker that dies mid-task (killed, out of memory) is retried up to
``max_retries`` times; an exception raised by the task itself is not retried (it would fail again)
and fails the whole ``map`` with that exception, so a run never continues with a gap where a
task's result should be.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

log = logging.getLogger("executor")

ROOT = Path(__file__).resolve().parents[1]


class SerialExecutor:
    """Every task in this process, in order."""

    name = "serial"

    def share(self, value: Any) -> Any:
        return value

    def map(self, fn: Callable, items: Iterable, *, shared: Any = None, desc: str | None = None,
            progress: bool = False) -> list:
        items = list(items)
        return [fn(shared, item) for item in tqdm(items, desc=desc, disable=not progress or len(items) < 2)]


class RayExecutor:
    """Tasks on Ray: ``address`` None starts a local Ray on this machine's CPUs (``num_cpus``: at
    most that many), else joins the cluster at ``address`` (``ray start --head`` prints it), shipping
    this project's code to the workers. ``cpus_per_task``: CPUs Ray reserves per task (the models'
    ``threads``), so tasks never oversubscribe a machine."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_task: int = 1,
                 max_retries: int = 3):
        import ray

        self._ray = ray
        self.cpus_per_task, self.max_retries = max(1, int(cpus_per_task)), int(max_retries)
        if not ray.is_initialized():
            pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
            env = {"env_vars": {"PYTHONPATH": pythonpath, "TF_CPP_MIN_LOG_LEVEL": "2"}}
            if address:
                # a remote cluster has no copy of this checkout: ship the code, not data or runs
                env = {"working_dir": str(ROOT), "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"},
                       "excludes": [".git", ".venv", ".cache", "runs", "data", "*.parquet"]}
            else:
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private instance of this process
            ray.init(address=address or None, num_cpus=None if address else num_cpus, runtime_env=env,
                     include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            log.info("ray: %s, %s CPUs", address or "local", ray.cluster_resources().get("CPU"))
        self._run = ray.remote(_call)

    def share(self, value: Any) -> Any:
        return self._ray.put(value)

    def map(self, fn: Callable, items: Iterable, *, shared: Any = None, desc: str | None = None,
            progress: bool = False) -> list:
        ray = self._ray
        items = list(items)
        # the shared value goes as a top-level argument: Ray resolves it to the stored object, read
        # in place by every task on a machine
        remote = self._run.options(num_cpus=self.cpus_per_task, max_retries=self.max_retries, retry_exceptions=False)
        pending = {remote.remote(fn, shared, item): k for k, item in enumerate(items)}
        results: list = [None] * len(items)
        with tqdm(total=len(items), desc=desc, disable=not progress or len(items) < 2) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                k = pending.pop(done[0])
                try:
                    results[k] = ray.get(done[0])
                except ray.exceptions.RayTaskError as exc:
                    for ref in pending:
                        ray.cancel(ref)
                    cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                    raise TaskFailed(f"{desc or fn.__name__}: task {k + 1} of {len(items)} failed: "
                                     f"{type(cause).__name__}: {cause}") from cause
                bar.update()
        return results


class TaskFailed(RuntimeError):
    """A task raised: the run stops with its error."""


def _call(fn, shared, item):
    return fn(shared, item)


def executor_from_config(cfg):
    """The executor a run's config (``config.schema.Config``) asks for; a Ray task reserves the
    models' ``threads`` CPUs."""
    e = cfg.executor
    return make_executor(e.kind, address=e.address or None, num_cpus=e.num_cpus or None, cpus_per_task=cfg.models.threads)


def make_executor(kind: str = "serial", *, address: str | None = None, num_cpus: int | None = None,
                  cpus_per_task: int = 1):
    """``serial`` or ``ray`` (see the module docstring)."""
    if kind == "serial":
        return SerialExecutor()
    if kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            from common.errors import UserError
            raise UserError("--executor ray needs Ray: pip install ray (see requirements.txt)") from None
        return RayExecutor(address, num_cpus, cpus_per_task)
    raise ValueError(f"unknown executor {kind!r}: 'serial' or 'ray'")
