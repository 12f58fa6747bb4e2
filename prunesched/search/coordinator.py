"""The coordinator: the loop that asks the proposer, evaluates on Ray workers, stores, tells and snapshots.

Order of durability, per generation: every new candidate is stored (with a queued evaluation)
before it is dispatched; every finished evaluation is committed as it arrives, before the
proposer is told; the generation's front, hypervolume and the proposer's state (JSON data) are
committed in one transaction after ``tell``. A search killed at any point resumes from its last
generation's snapshot: a proposer's ask depends only on that data, the search seed and the
generation number, so it asks for the same genomes again, and every schedule already evaluated
is served from the database, never evaluated twice.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from prunesched.errors import ConfigError, PruneschedError, StorageError
from prunesched.search import snapshot as snapshots
from prunesched.search.config import SearchConfig
from prunesched.search.dispatch import RayDispatcher, Task, ensure_ray
from prunesched.search.evaluators import Evaluator, evaluator_factory
from prunesched.search.pareto import front_indices, hypervolume, reference_point
from prunesched.search.proposers import Proposer, make_proposer
from prunesched.storage.records import Counts, Outcome, thaw
from prunesched.storage.store import FINISHED, Store


class SearchStateError(PruneschedError):
    """The search is in a state that does not allow the request."""


OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""This coordinator, as recorded on the searches it runs."""


@dataclass(frozen=True)
class Progress:
    """Where a running search stands, reported after each evaluation and each generation."""

    search_id: int
    generation: int
    generations: int
    done: int
    running: int
    failed: int
    front_size: int
    hypervolume: float | None
    generation_stored: bool  # True once, when this generation's front and snapshot are committed
    workers: int = 0  # evaluator actors asked for
    workers_up: int = 0  # of them up now; fewer while lost ones (a dead actor, a lost node) are being replaced
    replaced: int = 0  # actors replaced so far in this run


ProgressCallback = Callable[[Progress], None]
EvaluatorFactory = Callable[[], Evaluator]


def launch(
    config: SearchConfig,
    db: str | Path,
    progress: ProgressCallback | None = None,
    factory: EvaluatorFactory | None = None,
) -> int:
    """Create a search in ``db`` and run it to the end; returns its id.

    The workers are started and checked before the search is stored, so a configuration they
    refuse leaves no search behind. ``factory`` overrides the evaluator the config names (for
    evaluators defined in code).
    """
    store = Store(db, mode="create")
    with _workers(config, factory) as dispatcher:
        search_id = store.create_search(
            config.name, config.to_dict(), config.seed, config.objectives, version("prunesched"), config.reference_point, OWNER
        )
        with _owning(store, search_id):
            _run(store, search_id, config, make_proposer(config.space, config.proposer, config.seed), dispatcher, progress)
    return search_id


def resume(
    search_id: int,
    db: str | Path,
    progress: ProgressCallback | None = None,
    factory: EvaluatorFactory | None = None,
    force: bool = False,
) -> None:
    """Continue a stopped or crashed search from its last stored generation.

    Exactly one coordinator owns a search (two writers would evaluate twice). A search marked
    running by a live process of this host is refused; one marked running by another host's
    process, whose liveness cannot be checked, only with ``force`` (when that process is known to
    be gone). Ownership is then taken atomically in the database (:meth:`Store.claim`): of two
    resumes that passed these checks together, one runs and the other is refused, leaving the
    search as it was.
    """
    store = Store(db, mode="write")
    search = store.search(search_id)
    if search.status == "finished":
        raise SearchStateError(f"search {search_id} has finished; there is nothing to resume")
    if search.status == "running" and search.owner not in (None, OWNER):
        _refuse_if_owned(search_id, search.owner, force)
    if search.code_version != version("prunesched"):
        raise SearchStateError(
            f"search {search_id} was run by prunesched {search.code_version}, this is {version('prunesched')}; "
            f"its algorithm snapshot is only read by the same version"
        )
    config = SearchConfig.from_dict(thaw(search.config))
    proposer = _proposer(store, search_id, config)  # a snapshot it cannot use is refused before any worker starts
    if not store.claim(search, OWNER):
        owner = store.search(search_id).owner
        raise SearchStateError(
            f"search {search_id} is being run by {owner or 'another coordinator'}; it was taken while this one checked it"
        )
    with _owning(store, search_id), _workers(config, factory) as dispatcher:
        _run(store, search_id, config, proposer, dispatcher, progress)


def _refuse_if_owned(search_id: int, owner: str, force: bool) -> None:
    """Refuse to resume a search marked running by ``owner`` (host:pid) while that coordinator may be alive.

    Only a process on this host can be checked; ``force`` vouches for another host's, never for one here.
    """
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        if not force:
            raise SearchStateError(
                f"search {search_id} is being run by {owner} on another host; if that process is gone, resume with --force"
            )
        return
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return  # gone: a crashed coordinator's search is free to resume
    except PermissionError:
        pass  # alive, as another user
    raise SearchStateError(f"search {search_id} is being run by {owner}, a live process on this host; wait for it or stop it first")


@contextmanager
def _owning(store: Store, search_id: int) -> Iterator[None]:
    """Run the body as the owner of the search: then mark it finished, or interrupted if the body fails in any way.

    The mark is only set while this coordinator still owns the search (:meth:`Store.release`).
    """
    try:
        yield
    except BaseException:
        store.release(search_id, OWNER, "interrupted")
        raise
    store.release(search_id, OWNER, "finished")


@contextmanager
def _workers(config: SearchConfig, factory: EvaluatorFactory | None) -> Iterator[RayDispatcher]:
    """Started evaluator actors whose pipeline runs as many loop iterations as the space's schedules have; killed on exit."""
    config.dispatch.check_local_room()
    ensure_ray(config.dispatch.address)
    dispatch = config.dispatch
    dispatcher = RayDispatcher(
        factory or evaluator_factory(config.evaluator),
        dispatch.workers,
        dispatch.timeout_s,
        dispatch.retries,
        config.objectives,
        num_gpus=dispatch.gpus_per_worker,
        num_cpus=dispatch.cpus_per_worker,
    )
    try:
        steps = {info["steps"] for info in dispatcher.infos} - {None}
        if steps and steps != {config.space.steps}:
            raise ConfigError(
                f"[space] steps is {config.space.steps} but the evaluator's denoising loop has {steps.pop()} iterations; set steps to that"
            )
        yield dispatcher
    finally:
        dispatcher.close()


def _run(
    store: Store, search_id: int, config: SearchConfig, proposer: Proposer, dispatcher: RayDispatcher, progress: ProgressCallback | None
) -> None:
    """Run the owned search's remaining generations."""
    _reporter(store, search_id, proposer.generation, config, progress, dispatcher)(False)
    while not proposer.done():
        _generation(store, search_id, config, proposer, dispatcher, progress)


def _proposer(store: Store, search_id: int, config: SearchConfig) -> Proposer:
    """A new proposer, or the one of the latest stored generation's snapshot (this search's own, its checksum verified)."""
    snapshot = store.latest_snapshot(search_id)
    if snapshot is None:
        return make_proposer(config.space, config.proposer, config.seed)
    proposer = snapshots.loads(snapshot, config.space, config.proposer, config.seed)
    latest = store.generation(search_id)
    if latest is None or proposer.generation != latest.number + 1:
        raise StorageError(f"the algorithm snapshot is at generation {proposer.generation}, not after the latest stored one; refusing it")
    return proposer


def _generation(
    store: Store, search_id: int, config: SearchConfig, proposer: Proposer, dispatcher: RayDispatcher, progress: ProgressCallback | None
) -> None:
    number = proposer.generation
    genomes = proposer.ask()
    members = []
    for genome in genomes:
        schedule = config.space.decode(genome)
        members.append(store.candidate(search_id, schedule.hash, schedule.to_dict(), config.space.canonical(genome), number))
    pending = {c.id: (c, e) for c, e in members if e.status not in FINISHED}
    tasks = [Task(c.id, thaw(c.schedule), e.attempts) for c, e in pending.values()]
    report = _reporter(store, search_id, number, config, progress, dispatcher)

    def finished(outcome: Outcome) -> None:
        store.record(outcome)  # committed before the proposer hears of it
        report(False, outcome)

    dispatcher.run(
        tasks,
        started=lambda task, worker, attempt: store.mark_running(task.candidate_id, worker, attempt),
        finished=finished,
    )
    ids = [c.id for c, _ in members]
    rows = store.candidates_by_id(ids)
    objectives = np.array([[e.objective_0, e.objective_1] if e.status == "done" else [np.inf, np.inf] for _, e in rows], dtype=float)
    ok = np.array([e.status == "done" for _, e in rows], dtype=bool)
    proposer.tell(objectives.reshape(-1, 2), ok)
    front, volume = _front(store, search_id)
    store.save_generation(search_id, number, ids, front, volume, snapshots.dumps(proposer))
    report(True)


def _front(store: Store, search_id: int) -> tuple[list[int], float | None]:
    """The front of everything evaluated so far (candidate ids) and its hypervolume."""
    done = store.done_objectives(search_id)
    points = [[first, second] for _, first, second in done]
    front = [done[i][0] for i in front_indices(points)]
    stored = store.search(search_id).reference_point
    if stored is not None:
        return front, hypervolume(points, stored)
    if not points:
        return front, None
    reference = reference_point(points)
    store.set_reference_point(search_id, reference)
    return front, hypervolume(points, reference)


def _reporter(
    store: Store, search_id: int, number: int, config: SearchConfig, progress: ProgressCallback | None, dispatcher: RayDispatcher
) -> Callable[..., None]:
    """``report(stored, outcome)`` tells ``progress`` where the search stands.

    The counts are read from the database once per generation and when it is stored; in between,
    each finished ``outcome`` updates them in memory, because a query over the whole search after
    every evaluation would make a long search quadratic.
    """
    counts, latest = (store.counts(search_id), store.generation(search_id)) if progress else (Counts(), None)

    def report(stored: bool, outcome: Outcome | None = None) -> None:
        nonlocal counts, latest
        if progress is None:
            return
        if stored:
            counts, latest = store.counts(search_id), store.generation(search_id)
        elif outcome is not None:
            counts = Counts(done=counts.done + outcome.ok, active=counts.active - 1, failed=counts.failed + (not outcome.ok))
        progress(
            Progress(
                search_id=search_id,
                generation=number,
                generations=config.proposer.generations,
                done=counts.done,
                running=counts.active,
                failed=counts.failed,
                front_size=len(latest.front) if latest else 0,
                hypervolume=latest.hypervolume if latest else None,
                generation_stored=stored,
                workers=len(dispatcher.actors),
                workers_up=dispatcher.workers_up,
                replaced=dispatcher.replaced,
            )
        )

    return report
