"""The search: spaces (genome <-> Schedule), proposers, evaluators, Ray dispatch, and the coordinator loop.

>>> from prunesched.search import SearchConfig, launch
>>> search_id = launch(SearchConfig.load("search.toml"), "prunesched.db")
"""

from prunesched.search.config import SearchConfig
from prunesched.search.coordinator import Progress, launch, resume

__all__ = ["Progress", "SearchConfig", "launch", "resume"]
