"""Stage ``auth``: decide who is calling.

The rule (secure by default):

- A key is read from ``Authorization: Bearer <key>``, else from ``X-API-Key``.
- While auth.yaml lists at least one key, every request needs one of them: a missing key and an
  unknown key are both 401, whatever ``allow_anonymous_without_api_keys`` says.
- Only when auth.yaml lists no key *and* ``allow_anonymous_without_api_keys`` is true are callers
  anonymous; a key they send is then ignored, since there is nothing to check it against (the
  OpenAI SDKs always send one). The flag defaults to false: no keys and no flag refuses everyone.
- Anonymous callers are told apart by address (for rate limits); forwarding headers count only
  from ``ROUTER_TRUSTED_PROXIES`` (this plugin's setting); see ``plugins.auth.client_address``.

A presented key is looked up by its SHA-256 digest: one hash lookup however many keys there
are, and the plain key is never compared, so timing can tell nothing about it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import hookimpl
from core.chain import SETTLED
from core.config.sections import EnvOption, SettingsSection
from core.errors import AuthError
from core.flow import Caller, Flow
from plugins.auth.client_address import client_address, parse_networks

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from core.snapshot import Snapshot

log = logging.getLogger("maas.auth")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    trusted_proxies: tuple[str, ...] = ()  # addresses/CIDRs whose X-Real-IP / X-Forwarded-For count


SETTINGS = SettingsSection(AuthSettings, (
    EnvOption("ROUTER_TRUSTED_PROXIES", "trusted_proxies", "list", (),
              "addresses or CIDRs of the fronts whose X-Real-IP / X-Forwarded-For name the client"),
), title="auth")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="maas"'}


def presented_key(headers) -> str | None:
    """The key the request carries, or None. Raises AuthError for a malformed Authorization."""
    auth = headers.get("Authorization")
    if auth is not None and auth.strip():
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("The Authorization header must be 'Bearer <API key>'",
                            code="invalid_authorization_header", headers=_CHALLENGE)
        return token.strip()
    key = headers.get("X-API-Key")
    return key.strip() if key is not None and key.strip() else None


class AuthStage:
    name = "auth"

    def __init__(self, trusted_proxies: tuple[str, ...] = (), metrics=None) -> None:
        self.trusted = parse_networks(trusted_proxies)
        self.metrics = metrics

    def __call__(self, flow: Flow) -> Awaitable[None]:  # settles the flow without waiting: no coroutine
        """Set ``flow.caller``: who is calling (AuthError, counted by reason, when nobody may)."""
        try:
            # without trusted proxies the peer is the client (``client_address`` says the same)
            ip = client_address(flow.client_ip, flow.headers, self.trusted) if self.trusted else flow.client_ip
            auth = flow.snapshot.files.auth
            if auth.anonymous_allowed:
                flow.caller = Caller(name="anonymous", anonymous=True, client_ip=ip)
                return SETTLED
            key = presented_key(flow.headers)
            if key is None:
                if not auth.keys:
                    raise AuthError("No API keys are configured and anonymous access is disabled",
                                    code="anonymous_access_disabled", headers=_CHALLENGE)
                raise AuthError("Missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                                code="missing_api_key", headers=_CHALLENGE)
            found = auth.find(key)
            if found is None:
                raise AuthError("Invalid API key", code="invalid_api_key", headers=_CHALLENGE)
            flow.caller = Caller(name=found.name, anonymous=False, client_ip=ip, allowed_models=found.models)
        except AuthError as exc:
            if self.metrics is not None:
                self.metrics.auth_failures.labels(reason=exc.code).inc()
            raise
        return SETTLED


@hookimpl
def register_settings(register):
    register(SETTINGS)


@hookimpl
def register_stages(register, settings, metrics):
    register(AuthStage(settings.of(AuthSettings).trusted_proxies, metrics))


@hookimpl
def config_changed(snapshot: Snapshot, previous: Snapshot | None) -> None:
    auth = snapshot.files.auth
    if auth.keys and auth.allow_anonymous_without_api_keys:
        log.warning("allow_anonymous_without_api_keys is ignored: auth.yaml lists API keys, "
                    "so every request needs one")
    if not auth.keys and not auth.allow_anonymous_without_api_keys:
        log.warning("auth.yaml lists no API keys and anonymous access is disabled: every request gets 401")
    log.info("auth: %d API key(s), anonymous %s", len(auth.keys),
             "allowed" if auth.anonymous_allowed else "refused", extra={"keys": [k.name for k in auth.keys]})
