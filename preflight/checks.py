"""The preflight's checks: read-only, each returning pass, warn or fail with the exact fix.

:func:`run_checks` runs them in order against the configured tenant and returns a
:class:`preflight.results.Report`. Nothing here writes to Entra or Graph. Graph calls go through a
client of their own at ``bulk`` priority (an agent's calls go first) on the shared budget; the
app token is a fresh one from the token endpoint, never MSAL's cached one, so that a permission
granted or removed a minute ago shows.

The checks about the tenant itself (licence, TAP, beta endpoints, audit log, protected groups,
budget settings) are in :mod:`preflight.tenant_checks`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from django.conf import settings

from graph import GraphClient
from graph import applications as graph_applications
from graph.applications import Application, AppRole, AppRoleAssignment
from graph.client import http_session
from graph.errors import GraphAuthError, GraphError, GraphPermissionDenied, GraphTransient
from graph.token import CertificateCredential, TokenSource
from portal.graph_client import graph_config_from_settings
from preflight import permissions
from preflight.results import CheckResult, Report, Status

logger = logging.getLogger(__name__)

# A certificate that expires within this many days is a warning.
CERTIFICATE_WARN_DAYS = 30

ENTRA = "Entra admin center (entra.microsoft.com) > Identity > Applications > App registrations"


@dataclass
class Context:
    """What the checks share during one run: the client, the fresh token's claims, the app
    registration and its roles once read (each read once), and where the portal is reached."""

    client: GraphClient | None
    tenant_id: str
    client_id: str
    callback_urls: tuple[str, ...]
    known_user_id: str = ""
    claims: dict[str, Any] | None = None
    token_error: str = ""
    app_name: str = ""
    cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, read: Callable[[], Any]) -> Any:
        """``read()`` the first time (its GraphError kept and raised again), the same answer
        after."""
        if key not in self.cache:
            try:
                self.cache[key] = read()
            except GraphError as exc:
                self.cache[key] = exc
        value = self.cache[key]
        if isinstance(value, GraphError):
            raise value
        return value


def worse(a: Status, b: Status) -> Status:
    return a if a.rank >= b.rank else b


def app_path(ctx: Context, *steps: str) -> str:
    name = ctx.app_name or f"the app with Application (client) ID {ctx.client_id}"
    return " > ".join((ENTRA, name, *steps))


def permission_fix(ctx: Context, name: str) -> str:
    """The steps that grant the application permission ``name``."""
    return app_path(
        ctx,
        "API permissions > Add a permission > Microsoft Graph > Application permissions",
        f"{name} > Add permissions, then Grant admin consent for the tenant",
    )


def graph_failure(exc: GraphError) -> str:
    status = f"HTTP {exc.status} " if exc.status else ""
    return f"Graph answered {status}{exc.code}: {exc.message}"


def no_token(key: str, title: str, ctx: Context) -> CheckResult:
    return CheckResult(
        key,
        title,
        Status.WARN,
        "not checked: the portal could not get an app token (see Credentials)",
    )


# --- the token --------------------------------------------------------------------------------


def token_claims(token: str) -> dict[str, Any]:
    """The claims of an access token, read WITHOUT verifying its signature. Safe here only
    because this is our own token, just handed to us by the token endpoint over TLS: we read what
    it says about us (``roles``, ``tid``, ``appid``) and trust nothing else from it; Graph checks
    the signature when the token is used. Microsoft asks clients to treat access tokens as opaque
    and allows decoding for debugging and validation, which is what a preflight does
    (https://learn.microsoft.com/entra/identity-platform/access-tokens). Raises ValueError for a
    token that is not a JWT (Microsoft may change the format)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("the access token is not a JWT (three dot-separated parts)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the access token's payload is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("the access token's payload is not a JSON object")
    return data


def fresh_token() -> str:
    """A new app token from the token endpoint (a TokenSource of its own: MSAL's cache in the
    process's client is never consulted). Raises GraphAuthError or ValueError (bad PEM)."""
    config = graph_config_from_settings()
    source = TokenSource(
        tenant_id=config.tenant_id,
        client_id=config.client_id,
        client_secret=config.client_secret,
        client_cert_path=config.client_cert_path,
        login_host=config.login_host,
        graph_url=config.graph_url,
        http_client=http_session(
            config.ca_bundle or True,
            config.timeout,
            https_proxy=config.https_proxy,
            no_proxy=config.no_proxy,
        ),
    )
    return source.token()


# AADSTS codes of the token endpoint and what to do about each (Entra's error code reference:
# https://learn.microsoft.com/entra/identity-platform/reference-error-codes). Hints only: that
# page warns that codes change, so Entra's own answer is always printed beside the hint.
_CREDENTIAL_FIXES = {
    "AADSTS7000215": "the client secret is wrong: Certificates & secrets > Client secrets > New "
    "client secret, and put its Value (not its ID) in ENTRA_CLIENT_SECRET",
    "AADSTS7000222": "the client secret has expired: Certificates & secrets > Client secrets > "
    "New client secret, and put its Value in ENTRA_CLIENT_SECRET",
    "AADSTS700027": "Entra does not know this certificate: Certificates & secrets > "
    "Certificates > Upload certificate (the public certificate of ENTRA_CLIENT_CERT_PATH)",
    "AADSTS700016": "no app with ENTRA_CLIENT_ID exists in this tenant: copy the Application "
    "(client) ID from the app's Overview page",
    "AADSTS90002": "no tenant has ENTRA_TENANT_ID: copy the Directory (tenant) ID from the "
    "app's Overview page",
    "AADSTS7000218": "the request had no credential: set ENTRA_CLIENT_CERT_PATH or "
    "ENTRA_CLIENT_SECRET",
}


def _certificate_lines(ctx: Context, now: datetime) -> tuple[Status, list[str], str]:
    """The certificate's expiry: (status, lines, fix)."""
    path = settings.ENTRA_CLIENT_CERT_PATH
    credential = CertificateCredential.from_pem_file(path)
    certificate = x509.load_pem_x509_certificate(credential.public_certificate.encode())
    not_after = certificate.not_valid_after_utc
    days = (not_after - now).days
    line = (
        f"Certificate {path} (thumbprint {credential.thumbprint.upper()}, subject "
        f"{certificate.subject.rfc4514_string()}) expires {not_after:%Y-%m-%d %H:%M} UTC"
    )
    renew = app_path(ctx, "Certificates & secrets > Certificates > Upload certificate (a new one)")
    renew += ", then point ENTRA_CLIENT_CERT_PATH at its PEM (key and certificate) and restart"
    if not_after <= now:
        return Status.FAIL, [f"{line}: it has EXPIRED"], renew
    if now + timedelta(days=CERTIFICATE_WARN_DAYS) >= not_after:
        return Status.WARN, [f"{line}: in {days} days"], renew
    return Status.PASS, [f"{line} (in {days} days)"], ""


def check_credentials(ctx: Context) -> CheckResult:
    key, title = "credentials", "Credentials"
    now = datetime.now(UTC)
    using = (
        "the client certificate (ENTRA_CLIENT_CERT_PATH)"
        if settings.ENTRA_CLIENT_CERT_PATH
        else "the client secret (ENTRA_CLIENT_SECRET)"
    )
    status, fix = Status.PASS, ""
    lines: list[str] = []
    if settings.ENTRA_CLIENT_CERT_PATH:
        try:
            status, lines, fix = _certificate_lines(ctx, now)
        except (OSError, ValueError) as exc:
            return CheckResult(
                key,
                title,
                Status.FAIL,
                f"the certificate cannot be read: {exc}",
                fix="Give ENTRA_CLIENT_CERT_PATH a PEM file holding the unencrypted RSA private "
                "key and its certificate.",
            )
        if settings.ENTRA_CLIENT_SECRET:
            lines.append("A client secret is also set; the certificate is used, the secret not.")
    try:
        token = fresh_token()
    except (GraphAuthError, ValueError) as exc:
        code = getattr(exc, "code", "")
        message = getattr(exc, "message", str(exc))
        ctx.token_error = f"{code}: {message}" if code else message
        hint = next((v for k, v in _CREDENTIAL_FIXES.items() if k in f"{code} {message}"), "")
        if not hint and isinstance(exc, GraphTransient):
            hint = (
                "the login host did not answer: check ENTRA_LOGIN_HOST, the egress proxy "
                "(HTTPS_PROXY, NO_PROXY) and ENTRA_CA_BUNDLE, then run the check again"
            )
        return CheckResult(
            key,
            title,
            Status.FAIL,
            f"no app token with {using}: {ctx.token_error}",
            tuple(lines),
            fix=(hint[0].upper() + hint[1:] + ".")
            if hint
            else app_path(ctx, "Certificates & secrets: check the credential the portal uses"),
        )
    try:
        ctx.claims = token_claims(token)
    except ValueError as exc:
        ctx.claims = {}
        lines.append(f"The token could not be read ({exc}); the permission check cannot run.")
    tenant = str((ctx.claims or {}).get("tid") or "")
    if tenant and tenant.lower() != ctx.tenant_id.lower():
        lines.append(f"The token is for tenant {tenant}, not ENTRA_TENANT_ID {ctx.tenant_id}.")
        status = Status.FAIL
        fix = fix or "Set ENTRA_TENANT_ID to the Directory (tenant) ID of the app's tenant."
    return CheckResult(
        key,
        title,
        status,
        f"an app token was issued for {using}" + ("" if status is Status.PASS else "; see below"),
        tuple(lines),
        fix,
    )


# --- application permissions ------------------------------------------------------------------


def check_permissions(ctx: Context) -> CheckResult:
    key, title = "permissions", "Application permissions"
    if ctx.claims is None:
        return no_token(key, title, ctx)
    if not ctx.claims:
        return CheckResult(
            key,
            title,
            Status.WARN,
            "the app token could not be read, so its permissions are unknown",
            fix=app_path(ctx, "API permissions: compare with the list in README"),
        )
    roles = ctx.claims.get("roles")
    held = [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []
    report = permissions.compare(held)
    lines: list[str] = [
        "Read from the roles claim of a fresh app token (granted with admin consent).",
        "Needed: " + ", ".join(report.needed),
    ]
    fixes: list[str] = []
    status = Status.PASS
    for name, operations in report.missing.items():
        status = Status.FAIL
        lines.append(f"MISSING {name}: needed for {', '.join(operations)}")
        fixes.append(f"Grant {name}: " + permission_fix(ctx, name) + ".")
    for held_name, want in report.broader.items():
        status = worse(status, Status.WARN)
        lines.append(f"BROADER THAN NEEDED {held_name}: the portal needs only {want} for it")
        fixes.append(
            f"Least privilege: grant {want} ({permission_fix(ctx, want)}), then remove "
            f"{held_name} (API permissions > {held_name} > ... > Remove permission)."
        )
    for name in report.unneeded:
        status = worse(status, Status.WARN)
        lines.append(f"NOT NEEDED {name}: no operation of the portal uses it")
        fixes.append(
            f"Least privilege: remove {name} ("
            + app_path(ctx, f"API permissions > {name} > ... > Remove permission")
            + ")."
        )
    for name in report.unmapped:
        status = Status.FAIL
        lines.append(f"UNKNOWN operation {name}: preflight/permissions.py does not list it")
        fixes.append(f"Add {name} to OPERATION_PERMISSIONS in preflight/permissions.py.")
    if status is Status.PASS:
        summary = f"all {len(report.needed)} needed permissions granted, nothing more"
    elif report.missing:
        summary = "missing " + ", ".join(report.missing)
    else:
        summary = "everything needed is granted, but more than needed too"
    return CheckResult(key, title, status, summary, tuple(lines), "\n".join(fixes))


# --- the app registration: roles, redirect URI, token version, Application ID URI ---------------


def _app_roles(ctx: Context) -> list[AppRole]:
    assert ctx.client is not None
    client = ctx.client
    return list(
        ctx.once("app_roles", lambda: graph_applications.list_app_roles(client, ctx.client_id))
    )


def _assignments(ctx: Context) -> list[AppRoleAssignment]:
    assert ctx.client is not None
    client = ctx.client
    return list(
        ctx.once(
            "assignments",
            lambda: graph_applications.list_app_role_assigned_to(client, ctx.client_id),
        )
    )


def _application(ctx: Context) -> Application:
    assert ctx.client is not None
    client = ctx.client
    app: Application = ctx.once(
        "application", lambda: graph_applications.get_application(client, ctx.client_id)
    )
    return app


def _read_failure(ctx: Context, key: str, title: str, what: str, exc: GraphError) -> CheckResult:
    fix = ""
    if isinstance(exc, GraphPermissionDenied):
        fix = "Grant Application.Read.All: " + permission_fix(ctx, "Application.Read.All") + "."
    elif exc.status == 404:
        fix = "ENTRA_CLIENT_ID names no app registration in this tenant: copy the Application "
        fix += "(client) ID from the app's Overview page."
    return CheckResult(
        key, title, Status.FAIL, f"cannot read {what}: {graph_failure(exc)}", (), fix
    )


def check_app_roles(ctx: Context) -> CheckResult:
    key, title = "app_roles", "Portal app roles"
    if ctx.client is None or ctx.claims is None:
        return no_token(key, title, ctx)
    try:
        defined = _app_roles(ctx)
        assignments = _assignments(ctx)
    except GraphError as exc:
        return _read_failure(ctx, key, title, "the app roles of the portal's app", exc)
    wanted: Mapping[str, str] = settings.PORTAL_ROLE_CLAIMS
    by_value = {r.value: r for r in defined if r.value}
    holders: dict[str, list[str]] = {}
    for assignment in assignments:
        for role in defined:
            if role.id == assignment.app_role_id and role.value:
                kind = assignment.principal_type.lower() or "principal"
                holders.setdefault(role.value, []).append(
                    f"{assignment.principal_display_name or assignment.principal_id} ({kind})"
                )
    lines: list[str] = []
    fixes: list[str] = []
    status = Status.PASS
    for value, portal_role in wanted.items():
        found = by_value.get(value)
        if found is None:
            status = Status.FAIL
            lines.append(f"MISSING app role {value} (portal role {portal_role})")
            fixes.append(
                f"Create {value}: "
                + app_path(
                    ctx,
                    f"App roles > Create app role: Display name {portal_role}, Allowed member "
                    f"types Users/Groups, Value {value}, enable it > Apply",
                )
                + "."
            )
            continue
        if not found.is_enabled:
            status = Status.FAIL
            lines.append(f"DISABLED app role {value}: nobody gets {portal_role} from it")
            fixes.append(f"Enable {value}: " + app_path(ctx, f"App roles > {value} > Enable") + ".")
            continue
        held = sorted(holders.get(value, []))
        if held:
            shown = ", ".join(held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10 else "")
            lines.append(f"{value}: {len(held)} holder(s): {shown}")
        else:
            status = worse(status, Status.WARN)
            lines.append(f"{value}: nobody holds it")
            fixes.append(
                f"Assign {value}: Entra admin center > Identity > Applications > Enterprise "
                f"applications > {ctx.app_name or ctx.client_id} > Users and groups > Add "
                f"user/group > select the people or groups > Select a role: {portal_role} > "
                "Assign."
            )
    if not ctx.known_user_id:
        ctx.known_user_id = next((a.principal_id for a in assignments if a.is_user), "")
    summary = {
        Status.PASS: "Helpdesk.Agent, Helpdesk.Lead and Helpdesk.Admin exist and are held",
        Status.WARN: "every app role exists, but some are held by nobody",
        Status.FAIL: "missing or disabled: "
        + ", ".join(v for v in wanted if v not in by_value or not by_value[v].is_enabled),
    }[status]
    return CheckResult(key, title, status, summary, tuple(lines), "\n".join(fixes))


_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


def redirect_uri_registered(wanted: str, registered: Sequence[str]) -> str:
    """The registered URI that serves ``wanted``, or "". Exact match, except that for an http
    loopback URI (localhost, 127.0.0.1) Entra ignores the port
    (https://learn.microsoft.com/entra/identity-platform/reply-url, "Localhost exceptions")."""
    for uri in registered:
        if uri == wanted:
            return uri
    want = urlsplit(wanted)
    if want.scheme == "http" and (want.hostname or "") in _LOOPBACK_HOSTS:
        for uri in registered:
            have = urlsplit(uri)
            if (have.scheme, have.hostname, have.path) == ("http", want.hostname, want.path):
                return uri
    return ""


def check_redirect_uri(ctx: Context) -> CheckResult:
    key, title = "redirect_uri", "Redirect URI"
    if ctx.client is None or ctx.claims is None:
        return no_token(key, title, ctx)
    try:
        app = _application(ctx)
    except GraphError as exc:
        return _read_failure(ctx, key, title, "the app registration", exc)
    if not ctx.callback_urls:
        return CheckResult(
            key,
            title,
            Status.WARN,
            "the portal's address is unknown, so its callback URL is not checked",
            tuple(f"Registered: {u}" for u in app.redirect_uris),
            "Run `manage.py tenant_check --url https://<portal host>` or set CSRF_TRUSTED_ORIGINS.",
        )
    found = {url: redirect_uri_registered(url, app.redirect_uris) for url in ctx.callback_urls}
    lines = [
        f"{url}: registered" + (f" (as {hit})" if hit and hit != url else "")
        if hit
        else f"{url}: NOT registered"
        for url, hit in found.items()
    ]
    lines.append("Registered (Web): " + (", ".join(app.redirect_uris) or "none"))
    missing = [url for url, hit in found.items() if not hit]
    if not missing:
        return CheckResult(key, title, Status.PASS, "the callback URL is registered", tuple(lines))
    fix = "\n".join(
        app_path(ctx, f"Authentication > Web > Redirect URIs > Add URI: {url} > Save")
        for url in missing
    )
    return CheckResult(
        key, title, Status.FAIL, "not registered: " + ", ".join(missing), tuple(lines), fix
    )


def check_token_version(ctx: Context) -> CheckResult:
    key, title = "token_version", "Token version"
    if ctx.client is None or ctx.claims is None:
        return no_token(key, title, ctx)
    try:
        app = _application(ctx)
    except GraphError as exc:
        return _read_failure(ctx, key, title, "the app registration", exc)
    version = app.requested_access_token_version
    if version == 2:
        return CheckResult(key, title, Status.PASS, "v2 (api.requestedAccessTokenVersion is 2)")
    return CheckResult(
        key,
        title,
        Status.FAIL,
        f"api.requestedAccessTokenVersion is {version if version is not None else 'not set'}: "
        "Entra issues v1 tokens, which the sign-in refuses",
        fix=app_path(
            ctx,
            'Manifest: set "requestedAccessTokenVersion": 2 inside "api" (the older manifest: '
            '"accessTokenAcceptedVersion": 2) > Save',
        ),
    )


def sign_in_needs_exposed_api(client_id: str) -> bool:
    """Whether the sign-in asks for a scope of the portal's own API (``api://{client}/...``)."""
    scopes = settings.AUTH_ADFS.get("SCOPES") or ()
    return any(str(s).lower().startswith(f"api://{client_id}".lower()) for s in scopes)


def check_identifier_uri(ctx: Context) -> CheckResult:
    key, title = "identifier_uri", "Application ID URI"
    if ctx.client is None or ctx.claims is None:
        return no_token(key, title, ctx)
    try:
        app = _application(ctx)
    except GraphError as exc:
        return _read_failure(ctx, key, title, "the app registration", exc)
    wanted = f"api://{ctx.client_id}"
    listed = ", ".join(app.identifier_uris) or "none"
    if not sign_in_needs_exposed_api(ctx.client_id):
        return CheckResult(
            key, title, Status.PASS, f"not needed by the sign-in (identifierUris: {listed})"
        )
    if any(uri.lower() == wanted.lower() for uri in app.identifier_uris):
        return CheckResult(key, title, Status.PASS, f"{wanted} exists (the sign-in's scope)")
    return CheckResult(
        key,
        title,
        Status.FAIL,
        f"{wanted} is missing (identifierUris: {listed}): the sign-in asks for "
        f"{wanted}/.default and Entra answers AADSTS500011",
        fix=app_path(ctx, f"Expose an API > Application ID URI > Add > {wanted} > Save"),
    )


# --- the run ----------------------------------------------------------------------------------

Check = Callable[[Context], CheckResult]


def all_checks() -> tuple[Check, ...]:
    from preflight import tenant_checks

    return (
        check_credentials,
        check_permissions,
        check_app_roles,
        check_redirect_uri,
        check_token_version,
        check_identifier_uri,
        tenant_checks.check_licence,
        tenant_checks.check_tap_policy,
        tenant_checks.check_beta_endpoints,
        tenant_checks.check_audit_log,
        tenant_checks.check_protected_groups,
        tenant_checks.check_budget_settings,
    )


def callback_path() -> str:
    from django.urls import reverse

    return reverse("django_auth_adfs:callback")


def default_callback_urls() -> tuple[str, ...]:
    """Where the portal is reached, from settings alone (no request): each CSRF_TRUSTED_ORIGINS
    origin, else https on each ALLOWED_HOSTS name; the demo runs on http://127.0.0.1:PORT."""
    path = callback_path()
    origins = [str(o).rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS if "*" not in str(o)]
    if not origins:
        hosts = [h for h in settings.ALLOWED_HOSTS if h and not h.startswith((".", "*"))]
        scheme = "http" if settings.DEMO else "https"
        origins = [f"{scheme}://{h}" for h in hosts[:1]]
    return tuple(f"{origin}{path}" for origin in origins)


def preflight_client() -> GraphClient:
    """A Graph client of the run's own (fresh MSAL cache), at bulk priority on the shared
    budget: people at the portal go first."""
    return GraphClient(graph_config_from_settings(), priority="bulk")


def run_checks(
    *,
    callback_urls: Sequence[str] | None = None,
    known_user_id: str = "",
    by: str = "",
    client: GraphClient | None = None,
) -> Report:
    """Run every check in order. ``callback_urls``: the portal's callback URL(s) (from the
    request on the page; from settings by default). ``known_user_id``: a user for the beta reads
    (default: a holder of a portal app role). Never raises for what it finds."""
    started = datetime.now(UTC)
    ctx = Context(
        client=None,
        tenant_id=settings.ENTRA_TENANT_ID,
        client_id=settings.ENTRA_CLIENT_ID,
        callback_urls=tuple(callback_urls)
        if callback_urls is not None
        else default_callback_urls(),
        known_user_id=known_user_id,
    )
    results: list[CheckResult] = []
    for check in all_checks():
        if check is check_permissions and ctx.claims is not None:
            ctx.client = client or preflight_client()
            try:  # read once here for its name (the fixes say where to click)
                ctx.app_name = _application(ctx).display_name
            except GraphError:
                pass  # the checks that need it say why
        try:
            results.append(check(ctx))
        except Exception as exc:  # a check that breaks must not hide the others
            logger.exception("preflight check %s failed", check.__name__)
            results.append(
                CheckResult(
                    check.__name__.removeprefix("check_"),
                    check.__name__.removeprefix("check_").replace("_", " ").capitalize(),
                    Status.FAIL,
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                )
            )
    return Report(
        results=tuple(results),
        started_at=started,
        finished_at=datetime.now(UTC),
        by=by,
        tenant_id=ctx.tenant_id,
        client_id=ctx.client_id,
    )
