"""Optional features and the extras that install them (``pip install 'asrforge[serve]'``).

A command that needs an extra's packages checks for them before anything else, so a user without them gets one
line naming the extra, not an ImportError from deep inside. The extras themselves are declared in
``pyproject.toml``; ``all`` holds every one of them.
"""

from __future__ import annotations

import importlib.util

from asrforge.errors import AsrforgeError


def require_extra(extra: str, feature: str, *modules: str) -> None:
    """Raise :class:`AsrforgeError` naming ``pip install 'asrforge[extra]'`` unless every one of ``modules`` (the
    import names of the extra's packages) can be imported; ``feature`` is what needs them (``asrforge serve``)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise AsrforgeError(f"{feature} needs {', '.join(missing)}, which this installation lacks; install them with "
                            f"pip install 'asrforge[{extra}]' (or 'asrforge[all]' for every optional feature)")
