"""The login host: OpenID Connect discovery, JWKS, authorize, token, logout (Entra v2.0 shapes).

Paths (``{tenant}`` is the tenant id or its domain):
``/{tenant}/v2.0/.well-known/openid-configuration``, ``/{tenant}/discovery/v2.0/keys``,
``/{tenant}/oauth2/v2.0/authorize``, ``/{tenant}/oauth2/v2.0/token``,
``/{tenant}/oauth2/v2.0/logout``, ``/common/discovery/instance`` (MSAL instance discovery) and
``/oidc/userinfo``.

Authorize shows a sign-in page listing demo people (portal personas first), or signs a person in
directly with ``login_hint=<upn>``, or silently with the emulator's session cookie. It issues a
one-time code (10 minutes) bound to client, redirect URI, scope, nonce and PKCE challenge.

Token serves ``authorization_code`` (PKCE verified when a challenge was sent; client
authenticated), ``client_credentials`` (client secret, or a certificate assertion verified against
the app's registered certificates), ``refresh_token`` (rotating: the old refresh token stops
working) and the on-behalf-of ``jwt-bearer`` grant. Errors follow Entra's JSON shape with AADSTS
codes. Which token an authorization code or refresh token yields depends on the resource in the
requested scopes: a Graph scope gives a delegated Graph token (``scp``); the portal's own scope
(``api://{client_id}/...``, only once the app exposes that Application ID URI in
``identifier_uris``, else AADSTS500011) or only OpenID scopes give a token for the portal
(aud = client id) carrying the user's app roles in ``roles``. Tokens carry the documented v2.0
claims only (``entra_emulator.tokens``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import jwt
from werkzeug.wrappers import Request, Response

from entra_emulator.pki import b64url
from entra_emulator.seed import PERSONAS
from entra_emulator.tenant import AppRegistration, Tenant
from entra_emulator.tokens import GRAPH_APP_ID, GRAPH_RESOURCE, TokenError, TokenService

if TYPE_CHECKING:
    from entra_emulator.faults import Faults

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
CODE_LIFETIME = 600
REFRESH_TOKEN_LIFETIME = 90 * 24 * 3600
SESSION_COOKIE = "ESTSAUTH_EMULATOR"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SIGN_IN_PAGE_OTHERS = 40


class OAuthError(Exception):
    """An Entra error: ``error`` (OAuth code), AADSTS number and description."""

    def __init__(self, error: str, aadsts: int, description: str, status: int = 400) -> None:
        super().__init__(f"AADSTS{aadsts}: {description}")
        self.error = error
        self.aadsts = aadsts
        self.description = description
        self.status = status


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user_id: str
    auth_time: int
    expires_at: float


@dataclass
class _RefreshToken:
    client_id: str
    user_id: str
    scopes: list[str]
    issued_at: float
    expires_at: float
    auth_time: int


@dataclass
class _Session:
    user_id: str
    auth_time: int


@dataclass
class _Grant:
    """What a token request resolved to: the audience and the delegated permissions."""

    audience: str
    response_scopes: list[str]
    graph_scopes: list[str] = field(default_factory=list)
    portal: bool = False


def _entra_error_body(error: OAuthError) -> dict[str, Any]:
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": error.error,
        "error_description": (
            f"AADSTS{error.aadsts}: {error.description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ),
        "error_codes": [error.aadsts],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={error.aadsts}",
    }


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    all_headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
    all_headers.update(headers or {})
    return Response(
        json.dumps(body),
        status=status,
        headers=all_headers,
        content_type="application/json; charset=utf-8",
    )


def redirect_uri_allowed(app: AppRegistration, redirect_uri: str) -> bool:
    """Exact match, or a registered pattern whose ``*`` stands for a port number."""
    for registered in app.redirect_uris:
        if "*" in registered:
            pattern = "^" + re.escape(registered).replace(r"\*", r"\d{1,5}") + "$"
            if re.match(pattern, redirect_uri):
                return True
        elif registered == redirect_uri:
            return True
    return False


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


class OidcProvider:
    """The login host's endpoints and their state (codes, sessions, refresh tokens)."""

    def __init__(
        self,
        *,
        tenant_getter: Callable[[], Tenant],
        tokens: TokenService,
        faults: Faults,
        base_url: str,
        tenant_id: str,
        domain: str,
    ) -> None:
        self._tenant = tenant_getter
        self.tokens = tokens
        self.faults = faults
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self.domain = domain
        self._lock = threading.Lock()
        self._codes: dict[str, _AuthCode] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._sessions: dict[str, _Session] = {}
        self.token_requests = 0

    # --- URLs -----------------------------------------------------------------------------------

    def endpoint(self, name: str) -> str:
        base = f"{self.base_url}/{self.tenant_id}"
        return {
            "authorize": f"{base}/oauth2/v2.0/authorize",
            "token": f"{base}/oauth2/v2.0/token",
            "logout": f"{base}/oauth2/v2.0/logout",
            "keys": f"{base}/discovery/v2.0/keys",
            "devicecode": f"{base}/oauth2/v2.0/devicecode",
            "discovery": f"{base}/v2.0/.well-known/openid-configuration",
        }[name]

    def discovery_document(self) -> dict[str, Any]:
        """Every key django-auth-adfs 1.16 and MSAL 1.39 read, plus Entra's other keys."""
        host = urlsplit(self.base_url).netloc
        return {
            "token_endpoint": self.endpoint("token"),
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": self.endpoint("keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": self.tokens.issuer,
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
            "authorization_endpoint": self.endpoint("authorize"),
            "device_authorization_endpoint": self.endpoint("devicecode"),
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": self.endpoint("logout"),
            "claims_supported": [
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "kerberos_endpoint": f"{self.base_url}/{self.tenant_id}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            # Where clients send Graph calls: the emulator answers Graph on the same host.
            "msgraph_host": host,
            "rbac_url": "https://pas.windows.net",
        }

    # --- dispatch -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = request.path
        if path == "/common/discovery/instance":
            return self.instance_discovery(request)
        if path == "/oidc/userinfo":
            return self.userinfo(request)
        match = re.fullmatch(r"/(?P<tenant>[^/]+)(?P<rest>/.*)", path)
        if match is None:
            return _json({"error": "not_found"}, 404)
        tenant_segment, rest = match.group("tenant"), match.group("rest")
        if rest == "/discovery/v2.0/keys" and tenant_segment in {"common", "organizations"}:
            return _json(self.tokens.jwks())
        if tenant_segment.lower() not in {self.tenant_id, self.domain}:
            error = OAuthError(
                "invalid_tenant",
                90002,
                f"Tenant '{tenant_segment}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud.",
            )
            return _json(_entra_error_body(error), 400)
        handlers: dict[str, Callable[[Request], Response]] = {
            "/v2.0/.well-known/openid-configuration": lambda r: _json(self.discovery_document()),
            "/discovery/v2.0/keys": lambda r: _json(self.tokens.jwks()),
            "/oauth2/v2.0/authorize": self.authorize,
            "/oauth2/v2.0/token": self.token,
            "/oauth2/v2.0/logout": self.logout,
        }
        handler = handlers.get(rest)
        if handler is None:
            return _json({"error": "not_found", "error_description": f"No endpoint {rest}"}, 404)
        return handler(request)

    def instance_discovery(self, request: Request) -> Response:
        host = urlsplit(self.base_url).netloc
        return _json(
            {
                "tenant_discovery_endpoint": self.endpoint("discovery"),
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                ],
            }
        )

    def userinfo(self, request: Request) -> Response:
        try:
            info = self.tokens.validate_graph_token(request.headers.get("Authorization"))
        except TokenError as exc:
            return _json({"error": {"code": exc.code, "message": exc.message}}, 401)
        user = self._tenant().users.get(info.oid or "") if not info.is_app else None
        if user is None:
            return _json(
                {
                    "error": {
                        "code": "InvalidAuthenticationToken",
                        "message": "A user token is required.",
                    }
                },
                401,
            )
        return _json(
            {
                "sub": info.claims.get("sub"),
                "name": user["displayName"],
                "family_name": user.get("surname"),
                "given_name": user.get("givenName"),
                "email": user.get("mail"),
            }
        )

    # --- authorize ------------------------------------------------------------------------------

    def _session_user(self, request: Request) -> tuple[str, _Session] | None:
        session_id = request.cookies.get(SESSION_COOKIE)
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            return None
        user = self._tenant().users.get(session.user_id)
        if user is None or not user.get("accountEnabled", True):
            return None
        if session.auth_time < _epoch(user.get("signInSessionsValidFromDateTime")):
            return None  # revokeSignInSessions ends the browser session too
        return session_id, session

    def authorize(self, request: Request) -> Response:
        params = request.values.to_dict()
        tenant = self._tenant()
        client_id = params.get("client_id", "")
        app = tenant.apps.get(client_id)
        if app is None:
            return self._error_page(
                OAuthError(
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory "
                    f"'{self.domain}'. This can happen if the application has not been "
                    "installed by the administrator of the tenant.",
                )
            )
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or not redirect_uri_allowed(app, redirect_uri):
            return self._error_page(
                OAuthError(
                    "invalid_request",
                    50011,
                    f"The redirect URI '{redirect_uri}' specified in the request does not match "
                    f"the redirect URIs configured for the application '{client_id}'.",
                )
            )
        response_mode = params.get("response_mode", "query")
        state = params.get("state")
        try:
            if params.get("response_type") != "code":
                raise OAuthError(
                    "unsupported_response_type",
                    700054,
                    "response_type must be 'code' for this application.",
                )
            if response_mode not in {"query", "fragment", "form_post"}:
                raise OAuthError(
                    "invalid_request", 900144, f"Invalid response_mode '{response_mode}'."
                )
            scopes = params.get("scope", "").split()
            if not scopes:
                raise OAuthError(
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'scope'.",
                )
            self._resolve_scopes(app, scopes)  # fails early on a bad scope, as Entra does
            challenge = params.get("code_challenge") or None
            method = params.get("code_challenge_method") or ("plain" if challenge else None)
            if method not in {None, "plain", "S256"}:
                raise OAuthError(
                    "invalid_request", 501491, f"Invalid code_challenge_method '{method}'."
                )
            user_id, set_session = self._pick_user(request, params)
        except OAuthError as error:
            return self._redirect(
                redirect_uri,
                response_mode,
                {
                    "error": error.error,
                    "error_description": f"AADSTS{error.aadsts}: {error.description}",
                    "error_codes": str(error.aadsts),
                    **({"state": state} if state else {}),
                },
            )
        except _ShowSignInPage as page:
            return self._sign_in_page(params, app, page.message)

        auth_time = int(time.time())
        cookie_value: str | None = None
        if set_session:
            cookie_value = secrets.token_urlsafe(32)
            with self._lock:
                self._sessions[cookie_value] = _Session(user_id, auth_time)
        else:
            existing = self._session_user(request)
            if existing is not None:
                auth_time = existing[1].auth_time
        code = secrets.token_urlsafe(48)
        with self._lock:
            self._codes[code] = _AuthCode(
                client_id=client_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                nonce=params.get("nonce") or None,
                code_challenge=challenge,
                code_challenge_method=method,
                user_id=user_id,
                auth_time=auth_time,
                expires_at=time.time() + CODE_LIFETIME,
            )
        result = {"code": code, "session_state": str(uuid.uuid5(uuid.NAMESPACE_URL, user_id))}
        if state:
            result["state"] = state
        if params.get("client_info") == "1":
            result["client_info"] = self._client_info(user_id)
        response = self._redirect(redirect_uri, response_mode, result)
        if cookie_value:
            response.set_cookie(
                SESSION_COOKIE, cookie_value, secure=True, httponly=True, samesite="Lax", path="/"
            )
        return response

    def _pick_user(self, request: Request, params: dict[str, str]) -> tuple[str, bool]:
        """The user to sign in: (user id, whether a new emulator session starts).

        Raises _ShowSignInPage when a person must choose, OAuthError for prompt=none failures.
        """
        tenant = self._tenant()
        prompt = params.get("prompt", "")
        chosen = params.get("emulator_username", "").strip()
        if request.method == "POST" and chosen:
            user = tenant.find_user(chosen)
            if user is None:
                raise _ShowSignInPage(
                    "We couldn't find an account with that username. Try another."
                )
            self._check_enabled(user)
            return user["id"], True
        hint = params.get("login_hint", "").strip()
        if hint and prompt not in {"login", "select_account"}:
            user = tenant.find_user(hint)
            if user is not None:
                self._check_enabled(user)
                existing = self._session_user(request)
                if existing is not None and existing[1].user_id == user["id"]:
                    return user["id"], False
                return user["id"], True
        existing = self._session_user(request)
        if existing is not None and prompt not in {"login", "select_account"}:
            return existing[1].user_id, False
        if prompt == "none":
            raise OAuthError(
                "login_required",
                50058,
                "A silent sign-in request was sent but no user is signed in.",
            )
        raise _ShowSignInPage(None)

    @staticmethod
    def _check_enabled(user: dict[str, Any]) -> None:
        if not user.get("accountEnabled", True):
            raise _ShowSignInPage(
                "AADSTS50057: The user account is disabled. Sign in with another account."
            )

    def _client_info(self, user_id: str) -> str:
        raw = json.dumps({"uid": user_id, "utid": self.tenant_id}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _redirect(redirect_uri: str, mode: str, values: dict[str, str]) -> Response:
        if mode == "form_post":
            inputs = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in values.items()
            )
            page = (
                '<!doctype html><html lang="en"><head><meta charset="utf-8">'
                "<title>Continue</title></head><body>"
                f'<form method="post" action="{html.escape(redirect_uri)}">{inputs}'
                '<button type="submit">Continue</button></form></body></html>'
            )
            return Response(page, content_type="text/html; charset=utf-8")
        separator = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
        return Response(
            status=302,
            headers={
                "Location": redirect_uri + separator + urlencode(values),
                "Cache-Control": "no-store",
            },
        )

    def _error_page(self, error: OAuthError) -> Response:
        body = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            "<title>Sign in failed</title></head><body><main>"
            "<h1>Sorry, but we're having trouble signing you in.</h1>"
            f"<p>AADSTS{error.aadsts}: {html.escape(error.description)}</p>"
            "</main></body></html>"
        )
        return Response(body, status=400, content_type="text/html; charset=utf-8")

    def _sign_in_page(
        self, params: dict[str, str], app: AppRegistration, message: str | None
    ) -> Response:
        tenant = self._tenant()
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
            if k != "emulator_username"
        )

        def button(user: dict[str, Any], note: str) -> str:
            label = f"{user['displayName']} ({user['userPrincipalName']})"
            suffix = f" — {html.escape(note)}" if note else ""
            disabled = "" if user.get("accountEnabled", True) else " — account disabled"
            return (
                f'<li><button type="submit" name="emulator_username" '
                f'value="{html.escape(user["userPrincipalName"])}">'
                f"{html.escape(label)}</button>{suffix}{disabled}</li>"
            )

        persona_items, persona_ids = [], set()
        for persona in PERSONAS.values():
            user = tenant.users.get(persona["id"])
            if user is None:
                continue
            persona_ids.add(user["id"])
            roles = ", ".join(persona["app_roles"]) or "no portal role"
            persona_items.append(button(user, roles))
        others = []
        for user in tenant.users.values():
            if user["id"] in persona_ids:
                continue
            others.append(button(user, user.get("jobTitle") or ""))
            if len(others) >= SIGN_IN_PAGE_OTHERS:
                break
        notice = f'<p role="alert">{html.escape(message)}</p>' if message else ""
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to your account</title></head>
<body><main>
<h1>Sign in</h1>
<p>Entra ID emulator for <strong>{html.escape(tenant.domain)}</strong>, signing in to
<strong>{html.escape(app.display_name)}</strong>. Pick a person; no password is asked.</p>
{notice}
<form method="post" action="{html.escape(self.endpoint("authorize"))}">
{hidden}
<h2 id="personas">Portal personas</h2>
<ul aria-labelledby="personas">{"".join(persona_items)}</ul>
<h2 id="others">Other people</h2>
<ul aria-labelledby="others">{"".join(others)}</ul>
</form>
<form method="post" action="{html.escape(self.endpoint("authorize"))}">
{hidden}
<label for="emulator_username">Or type a user principal name</label>
<input id="emulator_username" name="emulator_username" type="email" autocomplete="username">
<button type="submit">Sign in</button>
</form>
</main></body></html>"""
        return Response(
            page, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
        )

    # --- logout ---------------------------------------------------------------------------------

    def logout(self, request: Request) -> Response:
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)
        target = request.args.get("post_logout_redirect_uri", "")
        allowed = bool(target) and any(
            redirect_uri_allowed(
                AppRegistration(
                    client_id="",
                    display_name="",
                    service_principal_id="",
                    redirect_uris=[_origin(uri) for uri in app.redirect_uris],
                ),
                _origin(target),
            )
            for app in self._tenant().apps.values()
        )
        if allowed:
            response = Response(status=302, headers={"Location": target})
        else:
            response = Response(
                '<!doctype html><html lang="en"><head><meta charset="utf-8">'
                "<title>Signed out</title></head><body><main><h1>You signed out of your account"
                "</h1><p>It's a good idea to close all browser windows.</p></main></body></html>",
                content_type="text/html; charset=utf-8",
            )
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
        return response

    # --- token ----------------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        self.faults.apply_latency()
        if self.faults.token_endpoint_down:
            error = OAuthError(
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
                status=503,
            )
            return _json(_entra_error_body(error), 503, {"Retry-After": "1"})
        with self._lock:
            self.token_requests += 1
        form = request.form.to_dict()
        try:
            grant_type = form.get("grant_type", "")
            if not grant_type:
                raise OAuthError(
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'grant_type'.",
                )
            handlers = {
                "authorization_code": self._grant_authorization_code,
                "client_credentials": self._grant_client_credentials,
                "refresh_token": self._grant_refresh_token,
                OBO_GRANT: self._grant_on_behalf_of,
            }
            handler = handlers.get(grant_type)
            if handler is None:
                raise OAuthError(
                    "unsupported_grant_type",
                    70003,
                    f"The app requested an unsupported grant type '{grant_type}'.",
                )
            app, azpacr = self._authenticate_client(request, form)
            return _json(handler(app, azpacr, form))
        except OAuthError as error:
            return _json(_entra_error_body(error), error.status)

    def _authenticate_client(
        self, request: Request, form: dict[str, str]
    ) -> tuple[AppRegistration, str]:
        """The calling app and its ``azpacr`` ("1" secret, "2" certificate)."""
        client_id = form.get("client_id", "")
        secret = form.get("client_secret")
        if request.authorization is not None and request.authorization.type == "basic":
            client_id = request.authorization.username or client_id
            secret = request.authorization.password
        assertion = form.get("client_assertion")
        if not client_id and assertion:
            try:
                client_id = str(
                    jwt.decode(assertion, options={"verify_signature": False}).get("iss", "")
                )
            except jwt.PyJWTError:
                client_id = ""
        if not client_id:
            raise OAuthError(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        app = self._tenant().apps.get(client_id)
        if app is None:
            raise OAuthError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.domain}'.",
            )
        if assertion:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise OAuthError(
                    "invalid_request", 50027, f"client_assertion_type must be '{ASSERTION_TYPE}'."
                )
            self._verify_assertion(app, assertion)
            return app, "2"
        if secret is None:
            # Every app here is a confidential (web) client: its code exchange, like every other
            # grant, must carry a client_secret or a client_assertion ("client_secret: required
            # for confidential web apps", or a certificate credential instead:
            # https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow#redeem-a-code-for-an-access-token,
            # https://learn.microsoft.com/entra/identity-platform/certificate-credentials#using-a-client-assertion).
            # AADSTS7000218 "The request body must contain the following parameter:
            # 'client_assertion' or 'client_secret'."
            # (https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
            # Docs silent: the HTTP status (401 here, as Entra's invalid_client answers).
            raise OAuthError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
                status=401,
            )
        if not any(hmac.compare_digest(secret.encode(), s.encode()) for s in app.client_secrets):
            raise OAuthError(
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
                status=401,
            )
        return app, "1"

    def _verify_assertion(self, app: AppRegistration, assertion: str) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise OAuthError(
                "invalid_client", 50027, f"JWT token is invalid or malformed: {exc}", status=401
            ) from exc
        algorithm = header.get("alg")
        if algorithm not in {"RS256", "PS256"}:
            raise OAuthError(
                "invalid_client",
                5002738,
                f"Invalid JWT token. '{algorithm}' is not a supported signature algorithm.",
                status=401,
            )
        certificate = None
        # MSAL keeps the base64url padding ("="); Entra accepts both spellings.
        x5t_s256 = str(header.get("x5t#S256") or "").rstrip("=")
        x5t = str(header.get("x5t") or "").rstrip("=")
        thumbprint = x5t_s256 or x5t
        for cert in app.certificates:
            if x5t_s256 and b64url(cert.sha256_thumbprint) == x5t_s256:
                certificate = cert
            elif x5t and b64url(cert.sha1_thumbprint) == x5t:
                certificate = cert
        if certificate is None:
            raise OAuthError(
                "invalid_client",
                700027,
                "Client assertion failed signature validation. [Reason - The key was not found., "
                f"Thumbprint of key used by client: '{thumbprint}']",
                status=401,
            )
        if certificate.not_after_epoch < time.time():
            raise OAuthError(
                "invalid_client",
                700027,
                "Client assertion contains an expired certificate.",
                status=401,
            )
        accepted_audiences = [
            self.endpoint("token"),
            f"{self.base_url}/{self.tenant_id}/oauth2/token",
            f"{self.base_url}/{self.domain}/oauth2/v2.0/token",
        ]
        try:
            claims = jwt.decode(
                assertion,
                certificate.public_key,
                algorithms=[algorithm],
                audience=accepted_audiences,
                leeway=30,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise OAuthError(
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature.",
                status=401,
            ) from exc
        except jwt.ExpiredSignatureError as exc:
            raise OAuthError(
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
                status=401,
            ) from exc
        except jwt.InvalidAudienceError as exc:
            raise OAuthError(
                "invalid_client",
                700212,
                "No matching federated identity record found for presented assertion audience.",
                status=401,
            ) from exc
        except jwt.PyJWTError as exc:
            raise OAuthError(
                "invalid_client", 50027, f"JWT token is invalid or malformed: {exc}", status=401
            ) from exc
        if claims["iss"] != app.client_id or claims["sub"] != app.client_id:
            raise OAuthError(
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
                status=401,
            )

    # --- scopes and resources -------------------------------------------------------------------

    def _graph_prefixes(self) -> tuple[str, ...]:
        return (f"{GRAPH_RESOURCE}/", f"{GRAPH_APP_ID}/", f"{self.base_url}/")

    @staticmethod
    def _names_own_api(app: AppRegistration, scope: str) -> bool:
        """Whether ``scope`` (``{resource}/{permission}``) names the calling app's own API.

        A scope's resource is the API's Application ID URI ("The scope's full string is the
        concatenation of your web API's Application ID URI and the scope's Scope name",
        https://learn.microsoft.com/entra/identity-platform/quickstart-configure-app-expose-web-apis):
        ``api://{client}/.default`` works only once the app has exposed that URI (Expose an API >
        Application ID URI, ``identifierUris``); before that Entra answers AADSTS500011, "The
        resource principal named ... was not found in the tenant", with ``invalid_resource``
        ("The target resource is invalid because it doesn't exist, Microsoft Entra ID can't find
        it, or it's not correctly configured", authorization endpoint errors of
        https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow; codes:
        https://learn.microsoft.com/entra/identity-platform/reference-error-codes). The app's bare
        client id also names it: a token for itself "is supported only if the resource that's
        specified is using the GUID-based application ID" (AADSTS90009, same reference). Docs
        silent: whether the URI match ignores case (here it does).
        """
        resource = scope.rsplit("/", 1)[0] if "/" in scope else ""
        if not resource:
            return False
        if resource.lower() == app.client_id.lower():
            return True
        return resource.lower() in {uri.rstrip("/").lower() for uri in app.identifier_uris}

    def _resolve_scopes(self, app: AppRegistration, scopes: list[str]) -> _Grant:
        """Which resource the scopes ask for, and the delegated permissions granted on it."""
        resource_scopes = [s for s in scopes if s.lower() not in OIDC_SCOPES]
        oidc_scopes = [s for s in scopes if s.lower() in OIDC_SCOPES]
        graph: list[str] = []
        portal: list[str] = []
        audience = GRAPH_RESOURCE
        for scope in resource_scopes:
            if self._names_own_api(app, scope):
                portal.append(scope)
                continue
            matched = next((p for p in self._graph_prefixes() if scope.startswith(p)), None)
            if matched is not None:
                graph.append(scope[len(matched) :])
                if matched == f"{self.base_url}/":
                    audience = self.base_url
            elif "/" not in scope and ":" not in scope:
                graph.append(scope)  # a bare permission name means Microsoft Graph
            else:
                resource = scope.rsplit("/", 1)[0]
                raise OAuthError(
                    "invalid_resource",
                    500011,
                    f"The resource principal named {resource} was not found in the tenant named "
                    f"{self.domain}.",
                )
        if graph and portal:
            raise OAuthError(
                "invalid_scope",
                28000,
                "Provided value for the input parameter scope is not valid because "
                "it contains more than one resource.",
            )
        if not graph:
            return _Grant(audience=app.client_id, response_scopes=portal + oidc_scopes, portal=True)
        granted: set[str] = set()
        for name in graph:
            if name == ".default":
                granted |= app.delegated_permissions
            elif name in app.delegated_permissions:
                granted.add(name)
            else:
                raise OAuthError(
                    "invalid_grant",
                    65001,
                    f"The user or administrator has not consented to use the application with "
                    f"ID '{app.client_id}'. Send an interactive authorization request for this "
                    f"user and resource ({name}).",
                )
        return _Grant(
            audience=audience,
            response_scopes=resource_scopes + oidc_scopes,
            graph_scopes=sorted(granted),
        )

    @staticmethod
    def _app_roles_of(tenant: Any, user_id: str) -> set[str]:
        """App roles assigned to the person and to the groups they are a direct member of.

        As in Entra, a group's assignment reaches its direct members only: nested groups do not
        pass app roles on.
        """
        with tenant.lock:
            roles = set(tenant.app_role_assignments.get(user_id, set()))
            for group_id, members in tenant.group_members.items():
                if user_id in members:
                    roles |= tenant.app_role_assignments.get(group_id, set())
        return roles

    def _user_tokens(
        self,
        app: AppRegistration,
        azpacr: str,
        user: dict[str, Any],
        scopes: list[str],
        *,
        nonce: str | None,
        auth_time: int,
        client_info: bool,
    ) -> dict[str, Any]:
        grant = self._resolve_scopes(app, scopes)
        tenant = self._tenant()
        roles = sorted(self._app_roles_of(tenant, user["id"]))
        if grant.portal:
            # The resource (here the app itself) owns its token's version: its manifest's
            # requestedAccessTokenVersion, "null and 1 result in v1.0 tokens"; a v1.0 aud "can
            # be the client ID or the resource URI used in the request", v2.0 "always the client
            # ID" (https://learn.microsoft.com/entra/identity-platform/access-tokens,
            # https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
            version = 2 if app.requested_access_token_version == 2 else 1
            audience = app.client_id
            if version == 1 and grant.response_scopes:
                first = grant.response_scopes[0]
                audience = first.rsplit("/", 1)[0] if "/" in first else app.client_id
            access_token = self.tokens.issue_user_access_token(
                client_id=app.client_id,
                user=user,
                audience=audience,
                roles=roles,
                azpacr=azpacr,
                version=version,
            )
        else:
            access_token = self.tokens.issue_user_access_token(
                client_id=app.client_id,
                user=user,
                audience=grant.audience,
                scopes=grant.graph_scopes,
                azpacr=azpacr,
            )
        lowered = {s.lower() for s in scopes}
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(grant.response_scopes),
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": access_token,
        }
        if "openid" in lowered:
            body["id_token"] = self.tokens.issue_id_token(
                client_id=app.client_id,
                user=user,
                nonce=nonce,
                auth_time=auth_time,
                email="email" in lowered,
                roles=roles,
            )
        if "offline_access" in lowered:
            refresh = secrets.token_urlsafe(64)
            now = time.time()
            with self._lock:
                self._refresh_tokens[refresh] = _RefreshToken(
                    client_id=app.client_id,
                    user_id=user["id"],
                    scopes=list(scopes),
                    issued_at=now,
                    expires_at=now + REFRESH_TOKEN_LIFETIME,
                    auth_time=auth_time,
                )
            body["refresh_token"] = refresh
            body["refresh_token_expires_in"] = REFRESH_TOKEN_LIFETIME
        if client_info:
            body["client_info"] = self._client_info(user["id"])
        return body

    # --- grants ---------------------------------------------------------------------------------

    def _grant_authorization_code(
        self, app: AppRegistration, azpacr: str, form: dict[str, str]
    ) -> dict[str, Any]:
        code_value = form.get("code", "")
        with self._lock:
            code = self._codes.pop(code_value, None)
        if code is None:
            raise OAuthError(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with "
                "a new valid code or use an existing refresh token.",
            )
        if code.expires_at < time.time():
            raise OAuthError(
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity.",
            )
        if code.client_id != app.client_id:
            raise OAuthError(
                "invalid_grant",
                70000,
                "The provided value for the 'code' parameter is not valid. The code "
                "was issued to a different client.",
            )
        if form.get("redirect_uri", "") != code.redirect_uri:
            raise OAuthError(
                "invalid_grant",
                500112,
                "The reply address does not match the reply address provided when "
                "requesting the authorization code.",
            )
        if code.code_challenge:
            verifier = form.get("code_verifier", "")
            if not verifier:
                raise OAuthError(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied "
                    "in the authorization request.",
                )
            if code.code_challenge_method == "S256":
                computed = b64url(hashlib.sha256(verifier.encode("ascii", "ignore")).digest())
            else:
                computed = verifier
            if not hmac.compare_digest(computed, code.code_challenge):
                raise OAuthError(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied "
                    "in the authorization request.",
                )
        user = self._active_user(code.user_id, code.auth_time)
        requested = form.get("scope", "").split()
        scopes = code.scopes
        if requested:
            # The token request may narrow to the resource asked at authorize; keep OIDC scopes.
            scopes = list(
                dict.fromkeys(requested + [s for s in code.scopes if s.lower() in OIDC_SCOPES])
            )
        return self._user_tokens(
            app,
            azpacr,
            user,
            scopes,
            nonce=code.nonce,
            auth_time=code.auth_time,
            client_info=form.get("client_info") == "1",
        )

    def _active_user(self, user_id: str, auth_time: int) -> dict[str, Any]:
        user = self._tenant().users.get(user_id)
        if user is None:
            raise OAuthError("invalid_grant", 50034, "The user account does not exist.")
        if not user.get("accountEnabled", True):
            raise OAuthError("invalid_grant", 50057, "The user account is disabled.")
        if auth_time < _epoch(user.get("signInSessionsValidFromDateTime")):
            raise OAuthError(
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh "
                "auth token is needed. The user might have changed or reset their "
                "password.",
            )
        return user

    def _grant_refresh_token(
        self, app: AppRegistration, azpacr: str, form: dict[str, str]
    ) -> dict[str, Any]:
        value = form.get("refresh_token", "")
        with self._lock:
            stored = self._refresh_tokens.pop(value, None)
        if stored is None or stored.client_id != app.client_id:
            raise OAuthError(
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid: the refresh "
                "token is unknown, already used, or issued to another client.",
            )
        if stored.expires_at < time.time():
            raise OAuthError(
                "invalid_grant", 700082, "The refresh token has expired due to inactivity."
            )
        user = self._active_user(stored.user_id, stored.auth_time)
        scopes = form.get("scope", "").split() or stored.scopes
        if "offline_access" not in {s.lower() for s in scopes}:
            scopes = [*scopes, "offline_access"]  # a refresh always yields the next one
        return self._user_tokens(
            app,
            azpacr,
            user,
            scopes,
            nonce=None,
            auth_time=stored.auth_time,
            client_info=form.get("client_info") == "1",
        )

    def _grant_client_credentials(
        self, app: AppRegistration, azpacr: str, form: dict[str, str]
    ) -> dict[str, Any]:
        scopes = form.get("scope", "").split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise OAuthError(
                "invalid_scope",
                1002012,
                f"The provided value for scope {' '.join(scopes) or '(none)'} is not valid. "
                "Client credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
            )
        resource = scopes[0][: -len("/.default")]
        if resource in {GRAPH_RESOURCE, GRAPH_APP_ID}:
            audience = GRAPH_RESOURCE
        elif resource == self.base_url:
            audience = self.base_url
        else:
            raise OAuthError(
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.domain}.",
            )
        token = self.tokens.issue_app_token(
            client_id=app.client_id,
            service_principal_id=app.service_principal_id,
            audience=audience,
            roles=sorted(app.application_permissions),
            azpacr=azpacr,
        )
        return {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }

    def _grant_on_behalf_of(
        self, app: AppRegistration, azpacr: str, form: dict[str, str]
    ) -> dict[str, Any]:
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(
                assertion,
                self.tokens.signing_key.public_key(),
                algorithms=["RS256"],
                audience=[app.client_id, f"api://{app.client_id}"],
                issuer=[self.tokens.issuer, self.tokens.v1_issuer],
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise OAuthError(
                "invalid_grant",
                50013,
                f"Assertion failed signature validation or is invalid: {exc}",
            ) from exc
        user = self._active_user(str(claims.get("oid")), int(claims.get("iat", 0)))
        scopes = form.get("scope", "").split() or [f"{GRAPH_RESOURCE}/.default"]
        grant = self._resolve_scopes(app, scopes)
        if grant.portal:
            raise OAuthError(
                "invalid_scope", 70011, "The on-behalf-of flow needs a downstream API scope."
            )
        return {
            "token_type": "Bearer",
            "scope": " ".join(grant.response_scopes),
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": self.tokens.issue_user_access_token(
                client_id=app.client_id,
                user=user,
                audience=grant.audience,
                scopes=grant.graph_scopes,
                azpacr=azpacr,
            ),
        }

    def reset(self) -> None:
        """Forget codes, refresh tokens and sessions (used by /_emulator/reset)."""
        with self._lock:
            self._codes.clear()
            self._refresh_tokens.clear()
            self._sessions.clear()


class _ShowSignInPage(Exception):
    def __init__(self, message: str | None) -> None:
        super().__init__(message or "")
        self.message = message


def _epoch(iso: str | None) -> int:
    if not iso:
        return 0
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
