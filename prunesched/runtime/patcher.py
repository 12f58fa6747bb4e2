"""Reversible changes to live objects, so that removing a patch restores the exact original behaviour."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn


class Patcher:
    """Records every method replacement and hook it makes, and undoes them in reverse order."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def replace_method(self, obj: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        """Shadow ``obj.name`` with ``make(current_method)`` as an instance attribute.

        Whatever instance attribute was there before (an accelerate offload hook, say) is put
        back on undo; otherwise the instance attribute is deleted and the class method shows again.
        The replacement carries the original's name, docstring and signature (``__wrapped__``),
        because diffusers inspects them, e.g. ``scheduler.step`` for ``eta`` and ``generator``.
        """
        own = vars(obj)
        had_own, previous = name in own, own.get(name)
        original = getattr(obj, name)
        setattr(obj, name, functools.wraps(original)(make(original)))

        def undo() -> None:
            if had_own:
                setattr(obj, name, previous)
            else:
                delattr(obj, name)

        self._undo.append(undo)

    def add_forward_hook(self, module: nn.Module, hook: Callable[..., Any]) -> None:
        """Register ``hook`` as a forward hook of ``module`` (it may return a replacement output); undo removes it."""
        self._undo.append(module.register_forward_hook(hook).remove)

    def on_undo(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the patch is undone (e.g. delete an attribute the patch set)."""
        self._undo.append(fn)

    def undo(self) -> None:
        """Undo everything, newest first; the patcher can be used again afterwards."""
        while self._undo:
            self._undo.pop()()
