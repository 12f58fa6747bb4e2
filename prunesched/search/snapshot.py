"""Proposer snapshots: the proposer's state as a JSON document, never a pickle.

A snapshot is UTF-8 JSON::

    {"format": "prunesched.proposer-state", "version": 1, "backend": "pymoo", "sampler": "nsga2",
     "state": {"generation": 3, ...}}

``state`` is :meth:`prunesched.search.proposers.Proposer.state`: for pymoo the surviving
population (genomes, objectives, constraint violations, ranks and crowding distances) and
whether pymoo ran out of new genomes; for Optuna every told trial (genes, values, state, system
attributes) and the study's system attributes; for random search the generation alone. A
proposer is rebuilt from the search's stored config and seed plus this data, so loading a
snapshot constructs nothing it names: a planted snapshot is at worst a wrong population, and a
malformed one is refused in one line.
"""

from __future__ import annotations

import json
from typing import Any

from prunesched.errors import StorageError
from prunesched.search.proposers import STATE_VERSION, Proposer, ProposerConfig, make_proposer
from prunesched.search.spaces import Space

FORMAT = "prunesched.proposer-state"


def dumps(proposer: Proposer) -> bytes:
    """``proposer``'s state as a snapshot document (strict JSON, keys sorted)."""
    document = {
        "format": FORMAT,
        "version": STATE_VERSION,
        "backend": proposer.config.backend,
        "sampler": proposer.config.sampler,
        "state": proposer.state(),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def loads(data: bytes, space: Space, config: ProposerConfig, seed: int) -> Proposer:
    """The proposer of a search (its ``space``, proposer ``config`` and ``seed``) in the state of the snapshot ``data``.

    Raises :class:`StorageError` in one line for anything that is not a snapshot of this format,
    version and backend, a pickle written by an older prunesched included.
    """
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError):
        raise StorageError(
            "the algorithm snapshot is not a JSON proposer state (a pickle from an older prunesched?) and prunesched "
            "never unpickles snapshots; resume this search with the version that wrote it, or start a new one"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StorageError(f"the algorithm snapshot is not a {FORMAT} document; refusing to use it")
    if document.get("version") != STATE_VERSION:
        raise StorageError(
            f"the algorithm snapshot is version {document.get('version')!r} of {FORMAT}; this prunesched reads version {STATE_VERSION}"
        )
    wanted = (config.backend, config.sampler)
    if (document.get("backend"), document.get("sampler")) != wanted:
        raise StorageError(
            f"the algorithm snapshot is of backend {document.get('backend')!r}/{document.get('sampler')!r} "
            f"but the search's config says {wanted[0]!r}/{wanted[1]!r}; refusing to use it"
        )
    proposer = make_proposer(space, config, seed)
    try:
        proposer.restore(document.get("state"))
    except ValueError as exc:
        raise StorageError(f"the algorithm snapshot's state is malformed: {exc}; refusing to use it") from None
    return proposer


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
