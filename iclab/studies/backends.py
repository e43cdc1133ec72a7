"""Where a sweep's points run: one after another in this process, or as Ray tasks.

A backend takes the unfinished points as :class:`~iclab.studies.groups.PointGroup` s —
points whose first trainings run as one compiled program, or single points — (plain
JSON-ready data, so a group can travel to another machine) and returns when every group
has finished or one has failed. Each point trains into its own run folder; a group that
dies leaves folders that the next ``--resume`` continues.

Ray (``pip install -e ".[ray]"``) runs each group as a task that asks for
``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs. With ``address=None`` it starts a
Ray instance on this machine; with ``"auto"`` or ``"HOST:PORT"`` it joins a running
cluster (``ray start --head`` on one machine, ``ray start --address HOST:PORT`` on the
others), whose workers must see the sweep folder at the same path (shared storage).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from iclab.errors import ConfigError, UserError
from iclab.studies.groups import PointGroup

RunGroup = Callable[[PointGroup], None]


@runtime_checkable
class Backend(Protocol):
    def run(self, groups: Sequence[PointGroup], run_group: RunGroup) -> None:
        """Run every group with ``run_group``; return when all have finished."""


@dataclasses.dataclass(frozen=True)
class LocalBackend:
    """Every group in this process, one after another."""

    def run(self, groups: Sequence[PointGroup], run_group: RunGroup) -> None:
        for group in groups:
            run_group(group)


@dataclasses.dataclass(frozen=True)
class RayBackend:
    """Every group as a Ray task, on this machine's Ray instance or a cluster's.

    Attributes:
        address: None to start Ray here; "auto" or "HOST:PORT" to join a cluster.
        cpus_per_task: CPUs each group's task asks Ray for.
        gpus_per_task: GPUs each group's task asks Ray for.
        retries: times Ray runs a group's task again when its worker process dies (killed,
            out of memory, its machine lost); the new task resumes the group's points from
            their folders, so finished work is kept.
    """

    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    retries: int = 3

    def __post_init__(self) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--backend ray needs Ray: pip install -e \".[ray]\"")
        if self.cpus_per_task <= 0 or self.gpus_per_task < 0 or self.retries < 0:
            raise ConfigError("Ray tasks need cpus_per_task > 0, gpus_per_task >= 0 and "
                              "retries >= 0")

    def run(self, groups: Sequence[PointGroup], run_group: RunGroup) -> None:
        import ray

        started_here = not ray.is_initialized()
        if started_here and self.address not in (None, "auto"):
            _require_reachable(self.address)
        if started_here:
            try:
                ray.init(address=self.address, include_dashboard=False,
                         log_to_driver=False, logging_level="ERROR")
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = self.address or "a local instance"
                raise UserError(f"--ray-address {where}: cannot connect to Ray "
                                f"({str(error).splitlines()[0]})") from None
        try:
            remote = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                                max_retries=self.retries)(_run_remote)
            pending = [remote.remote(group.to_json(), run_group) for group in groups]
            ray.get(pending)
        finally:
            if started_here:
                ray.shutdown()


def _require_reachable(address: str) -> None:
    """Fail at once, naming ``address`` (HOST:PORT), where nothing listens there; Ray
    itself keeps retrying for minutes."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address}: expected auto or HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise UserError(f"--ray-address {address}: cannot connect to Ray "
                        f"({error.strerror or error})") from None


def _run_remote(group: dict[str, Any], run_group: RunGroup) -> None:
    run_group(PointGroup.from_json(group))


def make_backend(kind: str, *, ray_address: str | None = None) -> Backend:
    """The backend named ``kind`` ("local" or "ray")."""
    if kind == "local":
        if ray_address is not None:
            raise ConfigError("--ray-address goes with --backend ray")
        return LocalBackend()
    if kind == "ray":
        return RayBackend(address=ray_address)
    raise ConfigError(f"--backend {kind!r}: expected 'local' or 'ray'")


__all__ = ["Backend", "LocalBackend", "RayBackend", "make_backend"]
