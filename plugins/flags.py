"""Feature flags: the one list of what can be toggled, each documented.

Turn flags on with ``ROUTER_FEATURE_FLAGS=a,b`` or ``feature_flags: [a, b]`` in routing.yaml
(reloadable). Stages ask ``flow.snapshot.flag(name)``.
"""

from __future__ import annotations

from core import hookimpl

FLAGS: dict[str, str] = {}


@hookimpl
def register_feature_flags(register):
    for name, description in FLAGS.items():
        register(name, description)
