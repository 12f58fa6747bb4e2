"""The coordinator: the loop that asks the proposer, evaluates on Ray workers, stores, tells and snapshots.

Before the first generation, the config's baselines (:mod:`prunesched.search.baselines`) are
evaluated the same way and stored as candidates born in generation -1. Within a generation, new
candidates are first screened on a few images and only those that can still reach the front are
evaluated on all (:mod:`prunesched.search.screening`); then, where the search confirms, the points
that reached the front are evaluated again on more images until every point of the front is
confirmed (:mod:`prunesched.search.confirmation`), and the proposer is told. After the last generation, the final
front and the baselines are validated on more images (:mod:`prunesched.search.validation`) by
workers of their own, and the search is finished once every validation is stored. Every finished evaluation
is checked against the search's guardrails (:mod:`prunesched.search.guardrails`) before it is
stored; only those within them can stand on a front.

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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path

import numpy as np

from prunesched.errors import ConfigError, PruneschedError, StorageError
from prunesched.evaluation.stats import Metrics
from prunesched.search import guardrails
from prunesched.search import snapshot as snapshots
from prunesched.search.config import SearchConfig
from prunesched.search.dispatch import RayDispatcher, Task, ensure_ray
from prunesched.search.evaluators import Evaluator, evaluator_factory
from prunesched.search.guardrails import FULL
from prunesched.search.pareto import front_indices, hypervolume, reference_point
from prunesched.search.proposers import Proposer, make_proposer
from prunesched.search.screening import can_reach
from prunesched.search.spaces import genome_of
from prunesched.search.validation import challengers, validation_settings
from prunesched.storage.records import Counts, FrozenCandidate, FrozenEvaluation, FrozenGeneration, Outcome, thaw
from prunesched.storage.store import BASELINE_GENERATION, FINISHED, Store


class SearchStateError(PruneschedError):
    """The search is in a state that does not allow the request."""


OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""This coordinator, as recorded on the searches it runs."""


@dataclass(frozen=True)
class Progress:
    """Where a running search stands, reported after each evaluation and each generation."""

    search_id: int
    generation: int  # -1 while the baselines are evaluated
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
    stage: str = "search"  # "baselines", "search" (the generations), or "validation"
    confirming: int = 0  # front points being confirmed on more images now


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
        guard = _guard(config, dispatcher)
        search_id = store.create_search(
            config.name, config.to_dict(), config.seed, config.objectives, version("prunesched"), config.reference_point, OWNER
        )
        with _owning(store, search_id):
            _run(store, search_id, config, _new_proposer(config), dispatcher, guard, progress)
            dispatcher.close()  # its workers' room goes to the validation's
            _validate(store, search_id, config, factory, progress)
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
    with _owning(store, search_id):
        with _workers(config, factory) as dispatcher:
            _run(store, search_id, config, proposer, dispatcher, _guard(config, dispatcher), progress)
        _validate(store, search_id, config, factory, progress)


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
def _workers(config: SearchConfig, factory: EvaluatorFactory | None, validating: bool = False) -> Iterator[RayDispatcher]:
    """Started evaluator actors whose pipeline runs as many loop iterations as the space's schedules have; killed on exit.

    They evaluate with the config's evaluator settings (holding the confirmation's images where the search confirms),
    or with its validation settings when ``validating``.
    """
    config.dispatch.check_local_room()
    ensure_ray(config.dispatch.address)
    dispatch = config.dispatch
    settings = validation_settings(config.evaluator, config.validation) if validating else None
    dispatcher = RayDispatcher(
        factory or evaluator_factory(settings or config.confirmation.worker_settings(config.evaluator)),
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


Guard = Callable[[Outcome], Outcome]
"""Adds an evaluation's guardrail violation to its outcome."""


def _guard(config: SearchConfig, dispatcher: RayDispatcher, validating: bool = False) -> Guard:
    """The search's guardrails, bounded by the full model's metrics the workers measured on as many images as the
    evaluation (a plain evaluation's or a confirmation's, where the search confirms).

    A guardrail bounded by ``"full"`` whose metric the evaluator does not measure is refused here, before
    anything is stored; one whose metric a result lacks fails that evaluation, naming the metric.
    """
    full = dispatcher.full_metrics(None) if dispatcher.infos else {}
    for guardrail in config.guardrails:
        if FULL in (guardrail.min, guardrail.max) and guardrail.metric not in full:
            measured = ", ".join(full) or "none"
            raise ConfigError(
                f"guardrail on {guardrail.metric!r} is bounded by the full model's value, but the evaluator measures no such metric "
                f"of the full model (it measures: {measured}); bound it by a number or name another metric"
            )

    fulls = {_images(full, config.guardrails): full}
    images = None if validating else config.confirmation.evaluation_images(config.evaluator)
    if images is not None:
        fulls[images] = dispatcher.full_metrics(images)

    def guarded(outcome: Outcome) -> Outcome:
        if not outcome.ok or not config.guardrails or outcome.metrics is None:
            return outcome
        try:
            violation, reason = guardrails.check(
                config.guardrails, outcome.metrics, fulls.get(_images(outcome.metrics, config.guardrails), full)
            )
        except ConfigError as exc:
            return replace(outcome, ok=False, metrics=None, objectives=None, error=str(exc))
        return replace(outcome, violation=violation, violation_reason=reason)

    return guarded


def _images(metrics: Metrics, rails: tuple[guardrails.Guardrail, ...]) -> int | None:
    """On how many images ``metrics`` measured the first guardrail's metric they hold (None: none of them)."""
    return next((metrics[g.metric].get("n") for g in rails if isinstance(metrics.get(g.metric), Mapping)), None)


def _new_proposer(config: SearchConfig) -> Proposer:
    """The proposer a search starts with: its first generation begins with the calibration's seeds and the baselines
    its space holds (:meth:`SearchConfig.seed_genomes`)."""
    return make_proposer(config.space, config.proposer, config.seed, config.seed_genomes())


def _run(
    store: Store,
    search_id: int,
    config: SearchConfig,
    proposer: Proposer,
    dispatcher: RayDispatcher,
    guard: Guard,
    progress: ProgressCallback | None,
) -> None:
    """Run the owned search: its baselines (those not yet evaluated), then its remaining generations."""
    _reporter(store, search_id, proposer.generation, config, progress, dispatcher)(False)
    _baselines(store, search_id, config, dispatcher, guard, progress)
    while not proposer.done():
        _generation(store, search_id, config, proposer, dispatcher, guard, progress)


def _proposer(store: Store, search_id: int, config: SearchConfig) -> Proposer:
    """A new proposer, or the one of the latest stored generation's snapshot (this search's own, its checksum verified)."""
    snapshot = store.latest_snapshot(search_id)
    if snapshot is None:
        return _new_proposer(config)
    proposer = snapshots.loads(snapshot, config.space, config.proposer, config.seed)
    latest = store.generation(search_id)
    if latest is None or proposer.generation != latest.number + 1:
        raise StorageError(f"the algorithm snapshot is at generation {proposer.generation}, not after the latest stored one; refusing it")
    return proposer


def _baselines(
    store: Store, search_id: int, config: SearchConfig, dispatcher: RayDispatcher, guard: Guard, progress: ProgressCallback | None
) -> None:
    """Evaluate the baselines not evaluated yet, as candidates born in generation -1 that carry their names (screened
    first where the search screens, and then all promoted)."""
    members = []
    for name, schedule in config.baseline_schedules().items():
        genome = genome_of(config.space, schedule) or ()  # a baseline outside the space has no genome
        members.append(store.candidate(search_id, schedule.hash, schedule.to_dict(), genome, BASELINE_GENERATION, baseline=name))
    report = _reporter(store, search_id, BASELINE_GENERATION, config, progress, dispatcher)
    images = config.screening.images_for(config.evaluator)
    if images is not None:  # screened too, so that the candidates' screenings have theirs to be compared with
        _screen(store, members, dispatcher, report, images)
        _promote(store, search_id, [c.id for c, _ in members], everyone=True)
        members = store.candidates_by_id([c.id for c, _ in members])
    _evaluate(store, members, dispatcher, guard, report, config.confirmation.evaluation_images(config.evaluator))
    _confirm(store, search_id, config, dispatcher, guard, report)


def _validate(
    store: Store, search_id: int, config: SearchConfig, factory: EvaluatorFactory | None, progress: ProgressCallback | None
) -> None:
    """Validate the final front's points (or as many as ``max_front_points`` allows), each baseline's challenger on the
    front and the baselines not validated yet, each on more images, on workers of their own."""
    latest = store.generation(search_id)
    if validation_settings(config.evaluator, config.validation) is None or latest is None:
        return
    measured = store.evaluations(search_id, generation=BASELINE_GENERATION, status="done")
    baselines = {c.id for c, e in measured}
    front = store.candidates_by_id(latest.front)
    searched = [(c, e) for c, e in front if c.baseline is None]
    against = challengers([e.objectives for _, e in searched], [e.objectives for _, e in measured if e.feasible])
    picked = {front[i][0].id for i in config.validation.thinned([e.objectives[1] for _, e in front])}
    picked |= {searched[i][0].id for i in against}
    rows = store.candidates_by_id(sorted(picked | baselines))
    tasks = [Task(c.id, thaw(c.schedule), 0, timed=c.id in picked) for c, e in rows if e.validation is None]
    if not tasks:
        return
    with _workers(config, factory, validating=True) as dispatcher:
        guard = _guard(config, dispatcher, validating=True)
        done = len(rows) - len(tasks)

        def report() -> None:
            if progress is not None:
                counts = Counts(done=done, active=len(rows) - done)
                progress(_progress(search_id, latest.number, config, dispatcher, counts, latest, False, "validation"))

        def finished(outcome: Outcome) -> None:
            nonlocal done
            store.record_validation(guard(outcome))
            done += 1
            report()

        report()
        dispatcher.run(tasks, started=lambda *_: None, finished=finished)


def _evaluate(
    store: Store,
    members: list[tuple[FrozenCandidate, FrozenEvaluation]],
    dispatcher: RayDispatcher,
    guard: Guard,
    report: Callable[..., None],
    images: int | None,
) -> None:
    """Evaluate the members not finished yet on the workers' first ``images`` images (None: all), storing each result
    (with its guardrail violation) as it arrives."""
    pending = {c.id: (c, e) for c, e in members if e.status not in FINISHED}
    tasks = [Task(c.id, thaw(c.schedule), e.attempts, images) for c, e in pending.values()]

    def finished(outcome: Outcome) -> None:
        outcome = guard(outcome)
        store.record(outcome)  # committed before the proposer hears of it
        report(False, outcome)

    dispatcher.run(
        tasks,
        started=lambda task, worker, attempt: store.mark_running(task.candidate_id, worker, attempt),
        finished=finished,
    )


def _confirm(
    store: Store, search_id: int, config: SearchConfig, dispatcher: RayDispatcher, guard: Guard, report: Callable[..., None]
) -> None:
    """Confirm the front's points on all the workers' images until every point of the front is confirmed; nothing where
    the search does not confirm. A confirmation replaces the point's values, so the front is computed again after each round."""
    if not config.confirmation.images:
        return
    while True:
        front = store.candidates_by_id(_front_ids(store.done_objectives(search_id)))
        tasks = [Task(c.id, thaw(c.schedule)) for c, e in front if e.confirmation is None]
        if not tasks:
            return
        left = len(tasks)
        report(False, confirming=left)

        def finished(outcome: Outcome) -> None:
            nonlocal left
            store.record_confirmation(guard(outcome))
            left -= 1
            report(False, confirming=left)

        dispatcher.run(tasks, started=lambda *_: None, finished=finished)


def _screen(
    store: Store,
    members: list[tuple[FrozenCandidate, FrozenEvaluation]],
    dispatcher: RayDispatcher,
    report: Callable[..., None],
    images: int,
) -> None:
    """Evaluate the members not screened yet on the first ``images`` images, storing each screening as it arrives."""
    pending = [(c, e) for c, e in members if e.status not in FINISHED and e.screening is None and e.promoted is None]
    tasks = [Task(c.id, thaw(c.schedule), e.attempts, images) for c, e in pending]

    def finished(outcome: Outcome) -> None:
        store.record_screening(outcome)
        report(False, None if outcome.ok else outcome)  # a success is not done yet: it waits for its promotion

    dispatcher.run(
        tasks,
        started=lambda task, worker, attempt: store.mark_running(task.candidate_id, worker, attempt),
        finished=finished,
    )


def _promote(store: Store, search_id: int, ids: list[int], everyone: bool = False) -> None:
    """Settle the screened candidates ``ids``: promote those that can still reach the front (``everyone``: all of them).

    A candidate can still reach the front when its screening is dominated by no screening of the front's members
    (the same images and seeds, so the comparison is paired); a member screened on none is compared by its full values.
    """
    front = store.candidates_by_id(_front_ids(store.done_objectives(search_id)))
    points = [e.screening["objectives"] if e.screening else e.objectives for _, e in front]
    for candidate, evaluation in store.candidates_by_id(ids):
        if evaluation.screening is not None and evaluation.promoted is None and evaluation.status not in FINISHED:
            store.promote(candidate.id, everyone or can_reach(evaluation.screening["objectives"], points))


def _generation(
    store: Store,
    search_id: int,
    config: SearchConfig,
    proposer: Proposer,
    dispatcher: RayDispatcher,
    guard: Guard,
    progress: ProgressCallback | None,
) -> None:
    number = proposer.generation
    genomes = proposer.ask()
    members = []
    for genome in genomes:
        schedule = config.space.decode(genome)
        members.append(store.candidate(search_id, schedule.hash, schedule.to_dict(), config.space.canonical(genome), number))
    ids = [c.id for c, _ in members]
    report = _reporter(store, search_id, number, config, progress, dispatcher)
    images = config.screening.images_for(config.evaluator)
    if images is not None:
        _screen(store, members, dispatcher, report, images)
        _promote(store, search_id, ids)
        report(False, recount=True)
        members = store.candidates_by_id(ids)
    _evaluate(store, members, dispatcher, guard, report, config.confirmation.evaluation_images(config.evaluator))
    _confirm(store, search_id, config, dispatcher, guard, report)
    rows = store.candidates_by_id(ids)
    objectives = np.array([[e.objective_0, e.objective_1] if e.status == "done" else [np.inf, np.inf] for _, e in rows], dtype=float)
    ok = np.array([e.status == "done" for _, e in rows], dtype=bool)
    violations = np.array([e.violation or 0.0 for _, e in rows], dtype=float)
    proposer.tell(objectives.reshape(-1, 2), ok, violations)
    front, volume = _front(store, search_id)
    store.save_generation(search_id, number, ids, front, volume, snapshots.dumps(proposer))
    report(True)


def _front(store: Store, search_id: int) -> tuple[list[int], float | None]:
    """The front of everything evaluated so far within the guardrails (candidate ids) and its hypervolume."""
    done = store.done_objectives(search_id)
    points = [[first, second] for _, first, second in done]
    front = _front_ids(done)
    stored = store.search(search_id).reference_point
    if stored is not None:
        return front, hypervolume(points, stored)
    if not points:
        return front, None
    reference = reference_point(points)
    store.set_reference_point(search_id, reference)
    return front, hypervolume(points, reference)


def _front_ids(done: list[tuple[int, float, float]]) -> list[int]:
    """The candidate ids of the non-dominated rows of ``done`` (:meth:`Store.done_objectives`), by the first objective."""
    return [done[i][0] for i in front_indices([[first, second] for _, first, second in done])]


def _reporter(
    store: Store, search_id: int, number: int, config: SearchConfig, progress: ProgressCallback | None, dispatcher: RayDispatcher
) -> Callable[..., None]:
    """``report(stored, outcome, recount, confirming)`` tells ``progress`` where the search stands.

    The counts are read from the database once per generation, after its screening (``recount``)
    and when it is stored; in between, each finished ``outcome`` updates them in memory, because a
    query over the whole search after every evaluation would make a long search quadratic.
    """
    counts, latest = (store.counts(search_id), store.generation(search_id)) if progress else (Counts(), None)

    def report(stored: bool, outcome: Outcome | None = None, recount: bool = False, confirming: int = 0) -> None:
        nonlocal counts, latest
        if progress is None:
            return
        if stored:
            counts, latest = store.counts(search_id), store.generation(search_id)
        elif recount:
            counts = store.counts(search_id)
        elif outcome is not None:
            counts = Counts(done=counts.done + outcome.ok, active=counts.active - 1, failed=counts.failed + (not outcome.ok))
        stage = "baselines" if number == BASELINE_GENERATION else "search"
        progress(_progress(search_id, number, config, dispatcher, counts, latest, stored, stage, confirming))

    return report


def _progress(
    search_id: int,
    number: int,
    config: SearchConfig,
    dispatcher: RayDispatcher,
    counts: Counts,
    latest: FrozenGeneration | None,
    stored: bool,
    stage: str,
    confirming: int = 0,
) -> Progress:
    """Where the search stands: ``counts`` of this stage's evaluations, the latest stored generation's front."""
    return Progress(
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
        stage=stage,
        confirming=confirming,
    )
