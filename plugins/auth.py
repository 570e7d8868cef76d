"""Stage ``auth``: decide who is calling."""

from __future__ import annotations

from core import hookimpl
from core.flow import Caller, Flow


class AuthStage:
    name = "auth"

    async def __call__(self, flow: Flow) -> None:
        flow.caller = Caller(name="anonymous", anonymous=True, client_ip=flow.client_ip)


@hookimpl
def register_stages(register):
    register(AuthStage())
