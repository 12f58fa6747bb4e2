"""The search: spaces (genome <-> Schedule), proposers, evaluators, Ray dispatch, and the coordinator loop.

>>> from prunesched.search import SearchConfig, launch
>>> search_id = launch(SearchConfig.load("search.toml"), "prunesched.db")

The names below load on first use, so reading a search (``prunesched.search.review``) does not
start the machinery that runs one.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prunesched.search.config import SearchConfig
    from prunesched.search.coordinator import Progress, launch, resume

__all__ = ["Progress", "SearchConfig", "launch", "resume"]


def __getattr__(name: str) -> Any:
    if name == "SearchConfig":
        from prunesched.search.config import SearchConfig

        return SearchConfig
    if name in __all__:
        from prunesched.search import coordinator

        return getattr(coordinator, name)
    raise AttributeError(f"module 'prunesched.search' has no attribute {name!r}")
