"""How the runtime's wrappers live with ``torch.compile``: on the compiled module, and outside what it traces.

A pipeline's denoiser may be compiled before :func:`~prunesched.apply`
(``pipe.unet = torch.compile(pipe.unet)`` or ``pipe.unet.compile()``) or after it. Either way
the patches go on the module itself, and compiled code traces through them. What the runtime
decides per call (the loop position, the step, the records) changes at every step; traced, it
would make dynamo recompile at every step until it gives up and runs the network eagerly. So
the wrappers of whole networks keep that part out of the trace, and the network they call is
compiled once per kind of step (full, each cache branch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def uncompiled(module: Any) -> Any:
    """The module ``torch.compile(module)`` wrapped (its ``_orig_mod``), or ``module`` itself.

    Patches go on the wrapped module: the compiled wrapper calls it, so compiled code traces the
    patched forward, and removing the patch restores both.
    """
    return module._orig_mod if isinstance(module, torch._dynamo.eval_frame.OptimizedModule) else module


def around(
    original: Callable[..., Any],
    before: Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, Any]],
    after: Callable[[Any, Any], None],
) -> Callable[..., Any]:
    """A forward that calls ``original`` between ``before`` and ``after``, which compiled code does not trace.

    ``before(args, kwargs)`` returns ``(token, result)``: a result other than None is returned at
    once, without calling ``original`` (a reuse step); otherwise ``after(output, token)`` runs on
    ``original``'s output. Only ``original`` and what it calls are compiled.
    """
    untraced_before, untraced_after = torch.compiler.disable(before), torch.compiler.disable(after)

    def forward(*args: Any, **kwargs: Any) -> Any:
        token, result = untraced_before(args, kwargs)
        if result is not None:
            return result
        output = original(*args, **kwargs)
        untraced_after(output, token)
        return output

    return torch.compiler.disable(forward, recursive=False)
