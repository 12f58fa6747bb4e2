"""The search: spaces (genome <-> Schedule), proposers, evaluators, Ray dispatch, and the coordinator loop.

>>> from prunesched.search import SearchConfig, launch
>>> search_id = launch(SearchConfig.load("search.toml"), "prunesched.db")

The names below load on first use, so reading a search (``prunesched.search.review``) does not
start the machinery that runs one.
"""

from typing import TYPE_CHECKING

from prunesched.lazy import lazy_names

if TYPE_CHECKING:
    from prunesched.search.config import SearchConfig
    from prunesched.search.coordinator import Progress, launch, resume

__all__ = ["Progress", "SearchConfig", "launch", "resume"]


__getattr__ = lazy_names(
    __name__,
    {
        "SearchConfig": "prunesched.search.config",
        "Progress": "prunesched.search.coordinator",
        "launch": "prunesched.search.coordinator",
        "resume": "prunesched.search.coordinator",
    },
)
