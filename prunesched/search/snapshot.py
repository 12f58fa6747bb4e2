"""Proposer snapshots: pickles, because pymoo's and Optuna's algorithm state has no other format.

A pickle can run any code when it is loaded. Snapshots are only read from the search's own
database, after their checksum (:meth:`prunesched.storage.Store.latest_snapshot`); on top of
that, :func:`loads` resolves only what a proposer is made of: classes of pymoo, Optuna,
prunesched and the standard types, and a short list of functions those pickles name. A payload
that calls ``os.system`` or ``builtins.eval`` is refused before anything is imported or run.
Anyone who can write the database can still hand prunesched a proposer of their making, so the
database must be trusted like the code.
"""

from __future__ import annotations

import io
import pickle

from prunesched.errors import StorageError
from prunesched.search.proposers import Proposer

CLASS_PACKAGES = frozenset({"pymoo", "optuna", "prunesched", "builtins", "datetime"})
"""Packages whose classes a snapshot may rebuild."""

CALLABLES = frozenset(
    {
        *(f"numpy.{core}.multiarray.{name}" for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.sum",
        *(f"numpy.random._pickle.__{kind}_ctor" for kind in ("bit_generator", "generator", "randomstate")),
        "numpy.random.bit_generator.SeedSequence",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
        *(
            f"numpy.random._{module}.{name}"
            for module, name in (
                ("mt19937", "MT19937"),
                ("pcg64", "PCG64"),
                ("pcg64", "PCG64DXSM"),
                ("philox", "Philox"),
                ("sfc64", "SFC64"),
            )
        ),
        "pymoo.algorithms.moo.nsga2.binary_tournament",
        "pymoo.core.duplicate.default_attr",
        "pymoo.operators.survival.rank_and_crowding.metrics.calc_crowding_distance",
        "optuna.samplers._tpe.sampler.default_weights",
    }
)
"""Everything else a snapshot may name: numpy's reconstructors and the functions pymoo's and Optuna's objects hold."""


def dumps(proposer: Proposer) -> bytes:
    return pickle.dumps(proposer)


def loads(data: bytes) -> Proposer:
    """The proposer in ``data``; a :class:`StorageError` if it names anything outside the allow-list."""
    proposer = _Unpickler(io.BytesIO(data)).load()
    if not isinstance(proposer, Proposer):
        raise StorageError(f"the algorithm snapshot holds a {type(proposer).__name__}, not a proposer; refusing to use it")
    return proposer


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        qualified = f"{module}.{name}"
        package = module.split(".")[0]
        if qualified in CALLABLES or package in CLASS_PACKAGES:  # checked before the module is imported
            found = super().find_class(module, name)
            if qualified in CALLABLES or isinstance(found, type):
                return found
        raise StorageError(f"the algorithm snapshot names {qualified}, which no proposer is made of; refusing to load it")
