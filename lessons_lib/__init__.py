"""lessons_lib: the shared library of the skin-lesion segmentation course.

Packages by meaning (``CONTRIBUTING.md`` draws the tree): ``data`` (publisher layouts, readers,
splits, the prepared cache), ``synth`` (synthetic dermoscopy), ``metrics`` (the ISIC rules),
``losses``, ``models`` (one module per network), ``transforms``, ``training`` (the one fastai
training path), ``evaluation`` (at original size, post-processing, ensembles), ``viz``,
``baseline``, ``params`` (a chapter's parameters), ``chapter`` and ``record`` (a run and its
``metrics.json``), ``source`` (showing library code in a chapter), ``book`` (the Sphinx
extension and the leaderboard), ``cli``.
"""

__version__ = "0.1.0"

import re as _re
import warnings as _warnings
from collections.abc import MutableMapping

UPSTREAM_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # fastai 2.8 compiles two activations with torch.jit.script when it is imported, which
    # torch 2.14 deprecates: printed once per process, above a chapter's first output, and
    # nothing a reader can act on. Matched by the start of its message, so any other warning
    # (of torch, fastai or anything else) stays visible.
    ("`torch.jit.script` is deprecated", FutureWarning),
)
"""Known upstream warnings this course hides, each ``(start of the message, category)``."""


def hide_upstream_warnings(
    env: MutableMapping[str, str] | None = None,
) -> MutableMapping[str, str] | None:
    """Hide :data:`UPSTREAM_WARNINGS`, and only those.

    Args:
        env: An environment for processes to start (a Jupyter kernel, a papermill run): its
            ``PYTHONWARNINGS`` gets one ``ignore`` filter per warning, so that the filter holds
            from the process's first import (a chapter imports fastai before ``lessons_lib``).
            ``None`` filters this process only (``import lessons_lib`` does that).

    Returns:
        ``env``, changed in place, or ``None``.
    """
    if env is None:
        for start, category in UPSTREAM_WARNINGS:
            _warnings.filterwarnings("ignore", message=_re.escape(start), category=category)
        return None
    specs = [f"ignore:{start}:{category.__name__}" for start, category in UPSTREAM_WARNINGS]
    known = [s for s in env.get("PYTHONWARNINGS", "").split(",") if s]
    env["PYTHONWARNINGS"] = ",".join([*known, *(s for s in specs if s not in known)])
    return env


hide_upstream_warnings()
