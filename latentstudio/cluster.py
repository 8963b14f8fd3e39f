"""Ray, the one distributed engine: a session and an unordered map over actors.

Ray is an optional extra (``pip install -e '.[cluster]'``). Used by ``latentstudio batch --ray``
(``latentstudio.batch``) and ``boundaries train --ray`` (``latentstudio.edit.train``): each actor
loads its models once, Ray restarts dead actors and retries their tasks, and results stream back
as they finish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from latentstudio.safety import InputError


class ClusterError(InputError):
    """Ray is missing or the cluster cannot be reached."""

    title = "Cannot use the cluster"


@contextmanager
def session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """The ``ray`` module, connected to ``address`` (a running cluster) or to a local cluster
    started here (``num_cpus``) and stopped again on exit."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError("--ray needs Ray: pip install -e '.[cluster]' (or pip install 'ray[default]')") from exc
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                     **({} if address else {"num_cpus": num_cpus} if num_cpus else {}))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot connect to the Ray cluster {address or '(local)'}: {exc}") from exc
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def map_unordered(ray: Any, actor: type, init_args: tuple, method: str, items: Iterable[Any], *,
                  actors: int = 0, num_gpus: float = 0) -> Iterator[Any]:
    """``getattr(actor(*init_args), method)(item)`` for every item on ``actors`` Ray actors
    (0: one per CPU of the cluster), results in the order they finish."""
    items = list(items)
    if not items:
        return
    remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_restarts=2, max_task_retries=2)(actor)
    n = max(1, min(actors or int(ray.available_resources().get("CPU", 1)), len(items)))
    pool = ray.util.ActorPool([remote.remote(*init_args) for _ in range(n)])
    call: Callable[[Any, Any], Any] = lambda a, item: getattr(a, method).remote(item)  # noqa: E731
    yield from pool.map_unordered(call, items)


__all__ = ["ClusterError", "map_unordered", "session"]
