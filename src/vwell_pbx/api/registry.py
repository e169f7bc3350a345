"""The method registry: a method is a name, an argument schema and one async function.

Adding a method means writing one decorated function in ``api.methods``; dispatch,
permissions, the error table and the OpenAPI document all read this registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from vwell_pbx.api.envelope import Arguments

if TYPE_CHECKING:
    from vwell_pbx.api.service import Call

ArgsT = TypeVar("ArgsT", bound=Arguments)
MethodFunc = Callable[["Call", ArgsT], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Method:
    """One API method as dispatch sees it."""

    name: str
    schema: type[Arguments]
    func: Callable[[Call, Any], Awaitable[dict[str, Any]]]
    summary: str
    answer: dict[str, str] = field(default_factory=dict)  # answer field -> description
    needs_pbx: bool = True
    needs_websocket: bool = False
    #: Callable by every signed-in user whatever the role's ``methods`` say (``whoami``:
    #: it shows callers only their own rights).
    every_role: bool = False


METHODS: dict[str, Method] = {}


def method(
    name: str,
    schema: type[ArgsT],
    *,
    summary: str,
    answer: dict[str, str] | None = None,
    needs_pbx: bool = True,
    needs_websocket: bool = False,
    every_role: bool = False,
) -> Callable[[MethodFunc[ArgsT]], MethodFunc[ArgsT]]:
    """Register ``func`` as the API method ``name`` validated by ``schema``."""

    def register(func: MethodFunc[ArgsT]) -> MethodFunc[ArgsT]:
        if name in METHODS:
            raise RuntimeError(f"method {name!r} registered twice")
        METHODS[name] = Method(
            name=name,
            schema=schema,
            func=func,
            summary=summary,
            answer=answer or {},
            needs_pbx=needs_pbx,
            needs_websocket=needs_websocket,
            every_role=every_role,
        )
        return func

    return register
