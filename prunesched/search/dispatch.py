"""Ray dispatch: long-lived evaluator actors, an own loop over ``ray.wait``, timeouts, retries, restarts.

Each actor builds its evaluator once (loading the pipeline) and then evaluates many schedules;
only metrics travel back. The loop runs in the coordinator, which alone writes the database:
it is told of every start and every finished outcome through callbacks, in order. An actor that
dies (or whose node is lost) or overruns ``timeout_s`` is killed and replaced and its candidate is
re-queued until the candidate's retry budget is spent; the loop does not wait for the replacement:
it goes on with the actors it has and gives the replacement work once Ray has placed and started it
(on a cluster that lost a node: when room appears). An evaluator that raises, or returns metrics that
cannot be stored (NaN objectives, missing ones, values that are not numbers), keeps its actor and is retried too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prunesched.errors import PruneschedError
from prunesched.search import reaper
from prunesched.search.config import RAY_CLIENT_REFUSED
from prunesched.search.evaluators import Evaluator, worker_name
from prunesched.storage.models import utcnow
from prunesched.storage.records import Outcome
from prunesched.storage.store import checked_metrics

READY_TIMEOUT_S = 600.0
"""How long an actor may take to build its evaluator (load a pipeline) before it counts as dead."""


class DispatchError(PruneschedError):
    """Evaluation cannot go on: no worker could start."""


@dataclass(frozen=True)
class Task:
    candidate_id: int
    schedule: dict[str, Any]
    attempts: int = 0  # attempts already spent (a resumed search carries them over)
    images: int | None = None  # score on the evaluator's first this many images (screening); None: all
    timed: bool = True  # False: no measured latency (a baseline's validation: its cost is the search's cost source's)


class EvaluatorActor:
    """Body of a Ray actor: builds the evaluator once, then evaluates schedule documents."""

    def __init__(self, factory: Callable[[], Evaluator]) -> None:
        self.evaluator = factory()

    def info(self) -> dict[str, Any]:
        return {
            "worker": worker_name(),
            "device": self.evaluator.device,
            "steps": self.evaluator.steps,
            "full": self.evaluator.full_metrics(),
        }

    def full_metrics(self, images: int | None) -> dict[str, Any]:
        return self.evaluator.full_metrics(images)

    def evaluate(self, schedule: dict[str, Any], images: int | None = None, timed: bool = True) -> dict[str, Any]:
        from prunesched.runtime.schedule import Schedule

        try:
            plan = Schedule.from_dict(schedule)
            metrics = self.evaluator.evaluate(plan, images, timed)
            return {"ok": True, "metrics": metrics}
        except Exception as exc:  # the evaluator's failure is the candidate's, not the actor's
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def ensure_ray(address: str | None) -> None:
    """Start a private local Ray instance (``address`` None or ``"local"``) or join a cluster, once per process.

    The local instance is always a new one, never a cluster already running on this machine (a
    bare ``ray.init()`` would join that): joining is what ``address`` is for. Its processes are
    watched by :mod:`prunesched.search.reaper`, which ends them if this process dies without
    shutting Ray down (SIGKILL, OOM). A given address is checked first, in at most
    :data:`PROBE_TIMEOUT_S`, because ``ray.init`` retries an address nobody answers for minutes.
    """
    import ray

    if address not in (None, "local"):
        _check_reachable(address)
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address in (None, "local"):
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        _watch_session()
        return
    try:
        ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, ValueError or RuntimeError, with pages of detail
        raise DispatchError(f"cannot join the Ray cluster at {address!r} ({_first_line(exc)}); {JOIN_HINT}") from None


_REAPERS: list[subprocess.Popen[bytes]] = []
"""The reaper of each local instance this process started; held so that its pipe stays open while this process lives."""


def _watch_session() -> None:
    """Start :mod:`prunesched.search.reaper` on the local instance just started (see there why it is needed)."""
    import ray

    node = ray._private.worker._global_node  # the only place Ray names the session's folder
    if node is None:
        return
    session_dir = node.get_session_dir_path()
    _REAPERS.append(
        subprocess.Popen(
            [sys.executable, reaper.__file__, session_dir, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    )


PROBE_TIMEOUT_S = 5.0
"""How long a TCP connection to a given Ray address may take before the address counts as dead."""

JOIN_HINT = "start one with 'ray start --head', or leave [dispatch] address out to run locally"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_reachable(address: str) -> None:
    """Refuse, in one line, an address that is not ``auto`` or host:port, or where nothing answers."""
    if "://" in address:
        raise DispatchError(RAY_CLIENT_REFUSED)
    target = address
    if address == "auto":  # Ray's own lookup: RAY_ADDRESS, else the cluster the latest 'ray start' recorded
        from ray._private.services import canonicalize_bootstrap_address

        try:
            found = canonicalize_bootstrap_address("auto")
        except Exception as exc:
            raise DispatchError(f"cannot join a Ray cluster with address 'auto' ({_first_line(exc)}); {JOIN_HINT}") from None
        if found is None:
            raise DispatchError(f"cannot join a Ray cluster with address 'auto' (none is running on this machine); {JOIN_HINT}")
        target = found
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DispatchError(
            f"[dispatch] address {address!r} is not 'auto' or host:port (the Ray head node's GCS address, e.g. 10.0.0.5:6379)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise DispatchError(f"cannot join the Ray cluster at {address!r}: no answer from {host}:{port} ({reason}); {JOIN_HINT}") from None


def check_resources(workers: int, num_gpus: float, num_cpus: float) -> None:
    """Refuse, in one line, a worker count the Ray cluster cannot place (Ray itself would wait forever)."""
    import ray

    total = ray.cluster_resources()
    for name, per_worker, setting in (("GPU", num_gpus, "gpus_per_worker"), ("CPU", num_cpus, "cpus_per_worker")):
        if workers * per_worker > total.get(name, 0.0):
            raise DispatchError(
                f"{workers} workers with {setting} = {per_worker:g} need {workers * per_worker:g} {name}s but the Ray cluster has "
                f"{total.get(name, 0.0):g}; lower [dispatch] workers or {setting}, or join a larger cluster with --address"
            )


class RayDispatcher:
    """Runs tasks on ``workers`` evaluator actors; see the module docstring for the failure rules.

    Construction fails with a one-line :class:`DispatchError` when the cluster lacks the
    resources the actors ask for or an actor cannot build its evaluator.
    """

    def __init__(
        self,
        factory: Callable[[], Evaluator],
        workers: int,
        timeout_s: float,
        retries: int,
        objectives: Sequence[str],
        num_gpus: float = 0.0,
        num_cpus: float = 0.0,
    ) -> None:
        import ray

        self.factory, self.timeout_s, self.retries, self.objectives = factory, timeout_s, retries, objectives
        check_resources(workers, num_gpus, num_cpus)
        self.actor_class = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=0)(EvaluatorActor)
        self.actors: list[Any] = []
        self.infos: list[dict[str, Any]] = []
        self.starting: dict[Any, int] = {}  # info ref of a replacement actor -> its slot
        self.replaced = 0  # actors replaced so far (died, lost with their node, or hung)
        self.failed_starts = 0  # replacements in a row that failed to start
        for _ in range(workers):
            self.actors.append(self._start())
        try:
            for actor in self.actors:
                self.infos.append(self._ready(actor))
        except DispatchError:
            self.close()
            raise

    def full_metrics(self, images: int | None) -> dict[str, Any]:
        """The unaccelerated model's metrics on the first ``images`` of the evaluator's images, as a worker measures them."""
        import ray

        if images is None and self.infos:
            return dict(self.infos[0]["full"])
        return dict(ray.get(self.actors[0].full_metrics.remote(images), timeout=READY_TIMEOUT_S))

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        self.starting = {}

    def run(
        self,
        tasks: Sequence[Task],
        started: Callable[[Task, str, int], None],
        finished: Callable[[Outcome], None],
    ) -> None:
        """Evaluate every task; ``started(task, worker, attempt)`` and ``finished(outcome)`` are called in the coordinator.

        A replaced actor is not waited for: the loop goes on with the actors it has and gives the
        replacement work once it is up (on a cluster that lost a node, when room appears). Only when
        no actor at all has been up for :data:`READY_TIMEOUT_S` does evaluation stop, with a :class:`DispatchError`.
        """
        import ray
        from ray.exceptions import RayError

        queue = deque(tasks)
        attempts = {t.candidate_id: t.attempts for t in tasks}
        running: dict[Any, tuple[int, Task, float, Any]] = {}  # ref -> (slot, task, start, start datetime)
        idle = [slot for slot in range(len(self.actors)) if slot not in self.starting.values()]
        alone_since = time.monotonic()  # since when no actor has been up
        while queue or running:
            while queue and idle:
                slot, task = idle.pop(0), queue.popleft()
                attempts[task.candidate_id] += 1
                started(task, self.infos[slot]["worker"], attempts[task.candidate_id])
                ref = self.actors[slot].evaluate.remote(task.schedule, task.images, task.timed)
                running[ref] = (slot, task, time.monotonic(), utcnow())
            now = time.monotonic()
            if running or idle:
                alone_since = now
            elif now - alone_since > READY_TIMEOUT_S:
                raise DispatchError(f"no evaluator worker has been up for {READY_TIMEOUT_S:g} s (the Ray cluster lost its nodes?)")
            deadline = min((start for _, _, start, _ in running.values()), default=now) + self.timeout_s
            waiting = list(running) + list(self.starting)
            ray.wait(waiting, num_returns=1, timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)  # everything finished by now
            now = time.monotonic()
            for ref in ready:
                if ref in self.starting:
                    slot = self.starting[ref]
                    if self._came_up(ref):
                        idle.append(slot)
                    continue
                slot, task, start, start_at = running.pop(ref)
                info = self.infos[slot]
                try:
                    reply = ray.get(ref)
                    idle.append(slot)
                except RayError as exc:  # the actor died, or its node did (or its result was lost): replace it
                    self._replace(slot)
                    reply = {"ok": False, "error": f"worker {info['worker']} failed: {type(exc).__name__}"}
                self._settle(queue, finished, task, attempts[task.candidate_id], reply, info, start_at, now - start)
            for ref, (slot, task, start, start_at) in list(running.items()):
                if now - start > self.timeout_s:  # not among the finished refs collected above
                    del running[ref]
                    info = self.infos[slot]  # the worker that hung, not its replacement
                    self._replace(slot)
                    reply = {"ok": False, "error": f"timed out after {self.timeout_s:g} s on {info['worker']}"}
                    self._settle(queue, finished, task, attempts[task.candidate_id], reply, info, start_at, now - start)

    @property
    def workers_up(self) -> int:
        """Actors up now (the others are replacements still starting)."""
        return len(self.actors) - len(self.starting)

    def _settle(
        self,
        queue: deque[Task],
        finished: Callable[[Outcome], None],
        task: Task,
        attempt: int,
        reply: dict[str, Any],
        info: dict[str, Any],
        start_at: Any,
        duration: float,
    ) -> None:
        metrics, values = None, None
        if reply["ok"]:  # the one check of a worker's metrics: unusable ones (NaN, missing, not numbers) fail the attempt
            try:
                metrics, values = checked_metrics(reply["metrics"], self.objectives)
            except ValueError as exc:
                reply = {"ok": False, "error": f"invalid metrics: {exc}"}
        if not reply["ok"] and attempt <= self.retries:
            queue.append(task)
            return
        finished(
            Outcome(
                candidate_id=task.candidate_id,
                ok=reply["ok"],
                attempts=attempt,
                metrics=metrics,
                objectives=values,
                error=reply.get("error"),
                worker=info["worker"],
                device=info["device"],
                started_at=start_at,
                duration_s=duration,
            )
        )

    def _start(self) -> Any:
        return self.actor_class.remote(self.factory)

    def _ready(self, actor: Any) -> dict[str, Any]:
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        try:
            return ray.get(actor.info.remote(), timeout=READY_TIMEOUT_S)
        except GetTimeoutError:
            raise DispatchError(f"an evaluator worker did not start within {READY_TIMEOUT_S:g} s") from None
        except RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            raise DispatchError(f"an evaluator worker failed to start: {str(cause).strip().splitlines()[-1]}") from None

    def _replace(self, slot: int) -> None:
        """Kill the actor of ``slot`` and start another, without waiting for it (:meth:`run` hands it work once it is up)."""
        import ray

        ray.kill(self.actors[slot])
        self.actors[slot] = self._start()
        self.starting[self.actors[slot].info.remote()] = slot
        self.replaced += 1

    def _came_up(self, ref: Any) -> bool:
        """Whether the replacement behind ``ref`` is up (its info stored); one that failed to start is started again."""
        import ray
        from ray.exceptions import RayError

        slot = self.starting[ref]
        del self.starting[ref]
        try:
            self.infos[slot] = ray.get(ref)
        except RayError as exc:
            self.failed_starts += 1
            if self.failed_starts > 2 * len(self.actors):  # failing again and again: its evaluator cannot be built
                cause = getattr(exc, "cause", None) or exc
                raise DispatchError(f"an evaluator worker failed to start: {str(cause).strip().splitlines()[-1]}") from None
            self._replace(slot)
            return False
        self.failed_starts = 0
        return True
