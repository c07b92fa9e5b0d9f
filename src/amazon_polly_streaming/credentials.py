"""AWS credentials: the value type and the resolver the client uses.

Resolution order, as boto3 does it, but without paying for botocore unless it
is needed: explicit credentials given to the client, then the environment
variables, then botocore's full default chain (profiles, SSO, credential
process, container and instance roles), imported lazily and run in a worker
thread because it may touch the network or the disk.

A stream keeps the credentials it was signed with from start to end. Expiring
credentials are refreshed as botocore's ``RefreshableCredentials`` does
(botocore/credentials.py, ``_advisory_refresh_timeout`` and
``_mandatory_refresh_timeout``, 15 and 10 minutes): with less than 15 minutes
left, a refresh starts in the background while streams go on with the
credentials in hand, and a failed one is logged and tried again later; with
less than 10 minutes left (Polly's stream limit: they might not outlast a
stream), a stream waits for the refresh and fails if it fails.
"""

from __future__ import annotations

import os
import time

from .exceptions import CredentialsError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from typing import Any, TypeAlias

    #: A callable that returns fresh credentials; it runs in a worker thread.
    CredentialProvider: TypeAlias = Callable[[], "Credentials"]
    #: What ``credentials=`` accepts: credentials, a key tuple, a provider, or
    #: botocore credentials (anything with ``get_frozen_credentials()``).
    CredentialsSource: TypeAlias = "Credentials | CredentialProvider | tuple[str, ...] | Any"

__all__ = ["CredentialResolver", "Credentials"]

#: Refresh, without holding a stream back, when less than this remains
#: (botocore's ``_DEFAULT_ADVISORY_REFRESH_TIMEOUT``).
ADVISORY_REFRESH_SECONDS = 15 * 60
#: A stream waits for fresh credentials when less than this remains: Polly
#: ends a stream after 10 minutes, so these might not outlast it (botocore's
#: ``_DEFAULT_MANDATORY_REFRESH_TIMEOUT``, the same 10 minutes).
MANDATORY_REFRESH_SECONDS = 10 * 60
#: After a failed refresh in the advisory window, the next try waits this long
#: (a broker that is briefly down is not asked again by every stream).
ADVISORY_RETRY_SECONDS = 30.0
#: The name earlier releases gave the refresh window.
REFRESH_MARGIN_SECONDS = ADVISORY_REFRESH_SECONDS


class Credentials:
    """An access key pair, an optional session token and an optional expiry.

    ``expiry`` is seconds since the epoch. The secret parts never appear in
    ``repr`` or ``str``.
    """

    __slots__ = ("access_key_id", "expiry", "secret_access_key", "session_token")

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None = None,
        expiry: float | None = None,
    ) -> None:
        if not access_key_id or not secret_access_key:
            raise ValueError("access_key_id and secret_access_key must be non-empty")
        for name, value in (
            ("access_key_id", access_key_id),
            ("secret_access_key", secret_access_key),
            ("session_token", session_token or ""),
        ):
            if not isinstance(value, str) or not value.isascii():
                # AWS credentials are ASCII; never echo the value, it is a secret.
                raise ValueError(f"{name} must be a str of ASCII characters")
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token or None
        self.expiry = expiry

    def __repr__(self) -> str:
        masked = "…" + self.access_key_id[-4:] if len(self.access_key_id) > 8 else "…"
        token = ", session_token=<redacted>" if self.session_token else ""
        return f"Credentials(access_key_id={masked!r}, secret_access_key=<redacted>{token})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return (self.access_key_id, self.secret_access_key, self.session_token) == (
            other.access_key_id,
            other.secret_access_key,
            other.session_token,
        )

    __hash__ = None  # type: ignore[assignment]

    def fresh_for(self, seconds: float, now: float) -> bool:
        """True when these credentials remain valid for at least ``seconds`` after ``now``."""
        return self.expiry is None or self.expiry - now >= seconds


def _is_botocore_like(source: object) -> bool:
    return callable(getattr(source, "get_frozen_credentials", None))


def _from_botocore(frozen: Any, expiry: float | None) -> Credentials:
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token, expiry)


def _botocore_expiry(creds: Any) -> float | None:
    # RefreshableCredentials keeps its expiry privately; static ones have none.
    expiry = getattr(creds, "_expiry_time", None)
    return expiry.timestamp() if expiry is not None else None


def _env_credentials(environ: os._Environ[str] | dict[str, str]) -> Credentials | None:
    key = environ.get("AWS_ACCESS_KEY_ID")
    secret = environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return None
    token = environ.get("AWS_SESSION_TOKEN") or environ.get("AWS_SECURITY_TOKEN")
    return Credentials(key, secret, token)


def _chain_tried(environ: os._Environ[str] | dict[str, str]) -> str:
    """What botocore's default chain looked at, in its order, for the error message.

    The order is botocore's ``create_credential_resolver``: environment,
    web identity, the profile (SSO, shared credentials file, credential
    process, config file), then container and instance roles.
    """
    from ._region import active_profile, config_file_path

    profile = active_profile(environ)
    named_by = next((n for n in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE") if environ.get(n)), None)
    credentials_file = environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    container = (
        "container role"
        if environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        else "container role (no AWS_CONTAINER_CREDENTIALS_* set)"
    )
    instance = (
        "instance role (disabled by AWS_EC2_METADATA_DISABLED)"
        if environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true"
        else "instance role (EC2 instance metadata)"
    )
    named = f"from {named_by}" if named_by else "AWS_PROFILE not set"
    return "; ".join(
        (
            "environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
            f"profile {profile!r} ({named}) in {os.path.expanduser(credentials_file)} and "
            f"{config_file_path(environ)}, with its SSO, web identity and credential_process settings",
            container,
            instance,
        )
    )


def _botocore_chain() -> Any:
    try:
        import botocore.session
    except ImportError as exc:
        raise CredentialsError(
            "no AWS credentials in the environment, and botocore (a dependency, for profiles, SSO and roles) "
            "cannot be imported: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, pass credentials=, "
            f"or reinstall amazon-polly-streaming ({exc})"
        ) from exc
    try:
        creds = botocore.session.get_session().get_credentials()
    except Exception as exc:
        raise CredentialsError(f"resolving AWS credentials failed: {type(exc).__name__}: {exc}") from exc
    if creds is None:
        raise CredentialsError(
            f"unable to locate AWS credentials. Tried: {_chain_tried(os.environ)}. "
            "Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, choose a profile with AWS_PROFILE "
            "(aws configure, aws sso login), or pass credentials="
        )
    return creds


def _frozen(source: Any) -> Credentials:
    """Fetch current credentials from a provider or botocore object (blocking)."""
    try:
        if _is_botocore_like(source):
            return _from_botocore(source.get_frozen_credentials(), _botocore_expiry(source))
        creds = source()
    except CredentialsError:
        raise
    except Exception as exc:
        raise CredentialsError(f"refreshing AWS credentials failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(creds, Credentials):
        raise CredentialsError(f"credential provider returned {type(creds).__name__}, not Credentials")
    return creds


class CredentialResolver:
    """Hands out current credentials, refreshing off the event loop when needed.

    Its ``repr`` is the default one and it holds secrets only inside
    :class:`Credentials`, whose ``repr`` redacts them.
    """

    def __init__(
        self, source: CredentialsSource | None, environ: os._Environ[str] | dict[str, str] | None = None
    ) -> None:
        self._cached: Credentials | None = None
        self._dynamic: Any = None  # a provider or botocore object, consulted on refresh
        self._pending: dict[asyncio.AbstractEventLoop, asyncio.Future[Credentials]] = {}
        self._environ = os.environ if environ is None else environ
        #: No advisory refresh before this time (after a failed one).
        self._advisory_after = 0.0
        if isinstance(source, Credentials):
            self._cached = source
        elif isinstance(source, tuple):
            self._cached = Credentials(*source)
        elif source is not None:
            if not callable(source) and not _is_botocore_like(source):
                raise TypeError(
                    "credentials must be Credentials, (key, secret[, token]), a provider or botocore credentials"
                )
            self._dynamic = source
        self._explicit = source is not None

    async def get(self, timeout: float) -> Credentials:
        """Current credentials; a refresh is shared by every waiter and bounded by ``timeout`` seconds."""
        cached = self._cached
        now = time.time()
        if cached is not None and cached.fresh_for(ADVISORY_REFRESH_SECONDS, now):
            return cached
        if self._dynamic is None:
            if self._explicit:
                # Explicit static credentials that are about to expire: use
                # them while they last; the service will say when they do not.
                assert cached is not None
                if cached.expiry is not None and cached.expiry <= now:
                    raise CredentialsError("the explicit credentials have expired")
                return cached
            from_env = _env_credentials(self._environ)
            if from_env is not None:
                self._cached = from_env
                return from_env
        import asyncio

        loop = asyncio.get_running_loop()
        for gone in [other for other in self._pending if other.is_closed()]:
            del self._pending[gone]  # its loop ended while a resolution blocked
        pending = self._pending.get(loop)
        if cached is not None and self._dynamic is not None and cached.fresh_for(MANDATORY_REFRESH_SECONDS, now):
            # The advisory window: these still outlast any stream. Refresh in
            # the background; until it succeeds, go on with them.
            if pending is None and now >= self._advisory_after:
                self._start_refresh(loop, advisory=True)
            return cached
        if pending is None:
            pending = self._start_refresh(loop, advisory=False)
        try:
            return await asyncio.wait_for(asyncio.shield(pending), timeout)
        except TimeoutError:
            raise CredentialsError(
                f"resolving AWS credentials took longer than {timeout:g} s (connect_timeout)"
            ) from None

    def _start_refresh(self, loop: asyncio.AbstractEventLoop, *, advisory: bool) -> asyncio.Future[Credentials]:
        """Single flight: every stream that needs credentials now shares this one resolution.

        It runs in a daemon thread of its own (it may block on the network or
        the disk, and cannot be interrupted).
        """
        from ._transport.threads import call_in_thread

        pending = self._pending[loop] = call_in_thread(self._refresh, name="polly-credentials")
        pending.add_done_callback(self._settled_advisory if advisory else self._settled)
        return pending

    def _settled(self, future: asyncio.Future[Credentials]) -> None:
        for loop, pending in list(self._pending.items()):
            if pending is future:
                del self._pending[loop]
        if not future.cancelled():
            future.exception()  # retrieved, even when every waiter gave up

    def _settled_advisory(self, future: asyncio.Future[Credentials]) -> None:
        self._settled(future)
        if future.cancelled():
            return
        now = time.time()
        error = future.exception()
        if error is None:
            if not future.result().fresh_for(ADVISORY_REFRESH_SECONDS, now):
                # The source hands out short-lived ones (or botocore kept its
                # own after a failure): ask again later, not before every stream.
                self._advisory_after = now + ADVISORY_RETRY_SECONDS
            return
        self._advisory_after = now + ADVISORY_RETRY_SECONDS
        cached = self._cached
        left = (cached.expiry - now) / 60 if cached is not None and cached.expiry is not None else 0.0
        import logging  # here: importing it costs milliseconds, and this is rare

        # The message is the CredentialsError's, which never holds a secret.
        logging.getLogger("amazon_polly_streaming").warning(
            "refreshing AWS credentials failed (%s); going on with the current ones, valid %.1f more minutes, "
            "and trying again in %g s",
            error,
            left,
            ADVISORY_RETRY_SECONDS,
        )

    def _refresh(self) -> Credentials:
        """Runs in a worker thread: find the chain once, then ask it for current credentials."""
        if self._dynamic is None:
            self._dynamic = _botocore_chain()
        fresh = _frozen(self._dynamic)
        self._cached = fresh
        self._advisory_after = 0.0
        return fresh
