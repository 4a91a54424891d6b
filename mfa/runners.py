"""The Graph steps of each kind of helpdesk action: the runners the engine calls.

Each runner gets the engine's :class:`~outbox.engine.Run` (the claimed row, the Graph client and
the fenced journal) and returns an :class:`~outbox.flow.Outcome`. The rules every runner keeps:

* read Graph fresh before writing, and read back after;
* put each write's key in the journal first (``run.write_begin``) and mark it done after
  (``run.write_done``); a re-run never repeats a completed write, and for one that was in flight
  it reads Graph (methods still registered, session timestamp, MFA state) instead of writing
  blindly. A TAP whose creation was in flight is never re-issued: the request fails with
  "outcome unknown";
* let throttled and transient Graph errors propagate (the engine defers the request), after
  taking a write Graph surely did not process off the journal;
* the new pass of a TAP goes to ``mfa.tap_vault`` only: never to a column, a log line, a Celery
  argument or result, or an email.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from audit.models import PortalEvent
from graph import methods as graph_methods
from graph import requirements as graph_requirements
from graph import sessions as graph_sessions
from graph import users as graph_users
from graph.errors import (
    GraphBadRequest,
    GraphError,
    GraphNotFound,
    GraphThrottled,
    GraphTransient,
)
from graph.results import AuthenticationMethod, MethodKind, PerUserMfa
from mfa import person_cache, tap_vault
from mfa.models import ActionKind, ActionRequest, Status
from outbox.engine import Run
from outbox.flow import Outcome
from roles.propagation import first_step_at, poll_again_or_give_up

logger = logging.getLogger(__name__)

# Deletion order of the methods of a re-registration (GRAPH.md): alternateMobile before mobile,
# and the kinds most likely to be the default sign-in method (which Graph refuses to delete while
# others remain) last. The default named by Graph's sign-in preferences goes after all of these
# (_deletion_plan); when they cannot be read this order stands alone. Either way a method Graph
# still refuses is retried once at the end.
_DELETE_ORDER: tuple[tuple[MethodKind, str | None], ...] = (
    (MethodKind.TEMPORARY_ACCESS_PASS, None),
    (MethodKind.EMAIL, None),
    (MethodKind.SOFTWARE_OATH, None),
    (MethodKind.PHONE, "alternateMobile"),
    (MethodKind.PHONE, "office"),
    (MethodKind.PLATFORM_CREDENTIAL, None),
    (MethodKind.WINDOWS_HELLO_FOR_BUSINESS, None),
    (MethodKind.FIDO2, None),
    (MethodKind.PHONE, "mobile"),
    (MethodKind.MICROSOFT_AUTHENTICATOR, None),
)
KIND_LABELS: dict[MethodKind, str] = {
    MethodKind.PHONE: "Phone",
    MethodKind.MICROSOFT_AUTHENTICATOR: "Microsoft Authenticator",
    MethodKind.SOFTWARE_OATH: "Software OATH token",
    MethodKind.FIDO2: "FIDO2 security key",
    MethodKind.EMAIL: "Email",
    MethodKind.WINDOWS_HELLO_FOR_BUSINESS: "Windows Hello for Business",
    MethodKind.TEMPORARY_ACCESS_PASS: "Temporary Access Pass",
    MethodKind.PLATFORM_CREDENTIAL: "Platform credential",
    MethodKind.PASSWORD: "Password",
    MethodKind.UNKNOWN: "Unknown method",
}


def method_label(method: AuthenticationMethod) -> str:
    """``Microsoft Authenticator (iPhone 15)``, ``Phone (mobile +44 ******0123)``: masked,
    safe to show and to log."""
    label = KIND_LABELS.get(method.kind, method.odata_type or "Method")
    return f"{label} ({method.detail})" if method.detail else label


def _method_entry(method: AuthenticationMethod) -> dict[str, Any]:
    return {
        "id": method.id,
        "type": method.odata_type,
        "phone_type": method.phone_type,
        "label": method_label(method),
    }


def _method_from_entry(entry: Mapping[str, Any]) -> AuthenticationMethod:
    odata_type = str(entry.get("type") or "")
    return AuthenticationMethod(
        id=str(entry["id"]),
        kind=MethodKind.from_odata_type(odata_type),
        odata_type=odata_type,
        detail="",
        phone_type=entry.get("phone_type"),
    )


def _deletion_rank(method: AuthenticationMethod) -> int:
    for rank, (kind, phone_type) in enumerate(_DELETE_ORDER):
        if method.kind is kind and (phone_type is None or method.phone_type == phone_type):
            return rank
    return 0  # an unlisted deletable kind goes first: it is not a default candidate


def _deletion_plan(
    methods: list[AuthenticationMethod], default_id: str | None
) -> list[AuthenticationMethod]:
    """The deletable methods in the order a re-registration removes them: by _DELETE_ORDER, with
    the known default (``default_id``) moved to the very end."""
    deletable = sorted((m for m in methods if m.kind.deletable), key=_deletion_rank)
    return sorted(deletable, key=lambda m: m.id == default_id)


def _graph_failure(exc: GraphError) -> dict[str, str]:
    return {"code": exc.code, "message": exc.message, "request_id": exc.request_id or ""}


# --- the kinds -----------------------------------------------------------------------------------


_CHECKING_REMAINS = "Checking what remains…"


def _run_reregister(run: Run[ActionRequest]) -> Outcome:
    """List, delete every deletable method (default last), optionally revoke, list again."""
    row = run.row
    user_id = row.target_id
    result = dict(row.result)
    if "plan" not in result:
        index = run.step("Listing registered methods…")
        methods = graph_methods.list_methods(run.client, user_id)
        run.step_end(index, state="done", suffix="done")
        default_id, default_source = _read_default(run, methods)
        deletable = _deletion_plan(methods, default_id)
        result.update(
            {
                "plan": [_method_entry(m) for m in deletable],
                "before": [method_label(m) for m in methods],
                "removed": [],
                "failed": [],
                # "signInPreferences" (the default is known and goes last) or "fallback"
                # (usual order, and what Graph refuses as the default is retried once).
                "default_source": default_source,
                "default_method_id": default_id,
            }
        )
        row.result = result
        names = ", ".join(method_label(m) for m in deletable) or "none"
        run.step(f"To remove, in this order: {names}", state="done")
        present: set[str] | None = {m.id for m in methods}
    else:
        # A re-run (retry or a dead worker's request): Graph says what is still there.
        present = None

    plan: list[dict[str, Any]] = list(result["plan"])
    done_ids = {e["id"] for e in result.get("removed", [])} | {
        e["id"] for e in result.get("failed", [])
    }
    queue = [e for e in plan if e["id"] not in done_ids]
    if queue and present is None:
        index = run.step("Checking which methods are still registered…")
        present = {m.id for m in graph_methods.list_methods(run.client, user_id)}
        run.step_end(index, state="done", suffix="done")
    retried: set[str] = set()
    while queue:
        entry = queue.pop(0)
        key = f"delete:{entry['id']}"
        if key in row.completed_writes:
            continue
        if present is not None and entry["id"] not in present:
            # Gone already: removed by our own write before a crash (or by someone else).
            row.result = {**row.result, "removed": [*row.result["removed"], entry]}
            run.write_done(key)
            run.step(f"{entry['label']} was already removed", state="done")
            continue
        index = run.step(f"Removing {entry['label']}…")
        run.write_begin(key)
        try:
            graph_methods.delete_method(run.client, user_id, _method_from_entry(entry))
        except GraphNotFound:
            pass  # deleted by an earlier attempt whose answer was lost
        except GraphBadRequest as exc:
            run.write_abandon(key)
            if entry["id"] not in retried and queue:
                # Most likely the default method, refused while others remain: retry it last.
                retried.add(entry["id"])
                queue.append(entry)
                run.step_end(
                    index,
                    state="waiting",
                    suffix="refused for now; trying again after the others",
                    detail=f"{exc.code}: {exc.message}",
                )
                continue
            _record_method_failure(run, index, entry, exc)
            continue
        except (GraphThrottled, GraphTransient) as exc:
            run.abandon_if_unprocessed(key, exc)
            raise
        except GraphError as exc:
            run.write_abandon(key)
            _record_method_failure(run, index, entry, exc)
            continue
        run.write_done(key)
        row.result = {**row.result, "removed": [*row.result["removed"], entry]}
        run.step_end(
            index,
            state="done",
            suffix="done",
            event=(
                PortalEvent.Kind.ACTION_STEP,
                {"step": "method_removed", "method": entry["label"], "method_id": entry["id"]},
            ),
        )

    revoke_ok = "revoke_failed" not in row.result
    if row.params.get("revoke_sessions") and revoke_ok:
        revoke_ok = _revoke_step(run)

    index = run.step(_CHECKING_REMAINS)
    after = graph_methods.list_methods(run.client, user_id)
    after_ids = {m.id for m in after}
    removed = [e for e in row.result["removed"] if e["id"] not in after_ids]
    not_removed = [e for e in row.result["removed"] if e["id"] in after_ids]
    if not_removed:
        # Graph accepted these deletes but still lists them: directory reads lag behind writes.
        # List again after a backoff (the engine defers the run; the journal says each delete
        # was done, so none is sent again) up to PORTAL_RELIST_TIMEOUT_SECONDS after the first
        # re-list; only then report them as still registered.
        run.step_end(index, state="waiting", suffix="some deletions not visible yet")
        elapsed = poll_again_or_give_up(
            run,
            since=first_step_at(row.steps, _CHECKING_REMAINS) or timezone.now(),
            limit_seconds=settings.PORTAL_RELIST_TIMEOUT_SECONDS,
            waiting="Waiting for Entra to stop listing the removed methods",
            detail="Still listed after the delete: " + ", ".join(e["label"] for e in not_removed),
        )
        index = run.step(f"Checking what remains… (after {elapsed:.0f} s)")
    failed = list(row.result["failed"]) + [
        {
            **e,
            "code": "StillRegistered",
            "message": (
                "Graph accepted the delete but still lists this method after "
                f"{settings.PORTAL_RELIST_TIMEOUT_SECONDS} s; check Entra."
            ),
            "request_id": "",
        }
        for e in not_removed
    ]
    # The verifying re-list is fresh: the person page shows it without another read.
    person_cache.refill_methods(user_id, after)
    remaining = [method_label(m) for m in after if m.kind.deletable]
    kept = [method_label(m) for m in after if not m.kind.deletable]
    row.result = {
        **row.result,
        "removed": removed,
        "failed": failed,
        "remaining": remaining,
        "kept": kept,
    }
    run.step_end(
        index,
        state="done" if not remaining else "failed",
        suffix="done",
        detail=("Still registered: " + ", ".join(remaining))
        if remaining
        else "Nothing remains but the password.",
    )
    if not remaining and not failed and revoke_ok:
        return Outcome(Status.SUCCEEDED)
    if removed or row.result.get("sessions_revoked"):
        return Outcome(Status.PARTIALLY_SUCCEEDED)
    return Outcome(Status.FAILED)


def _read_default(
    run: Run[ActionRequest], methods: list[AuthenticationMethod]
) -> tuple[str | None, str]:
    """The id of the user's default method, from Graph's sign-in preferences, and where the
    deletion order comes from: ``("<id>", "signInPreferences")``, or ``(None, "fallback")`` when
    the preferences cannot be read or name no registered method (a visible step says which).

    A Graph failure here never fails the request: the fallback order plus the retry-once of a
    refused delete still removes the default last.
    """
    if not any(m.kind.deletable for m in methods):
        return None, "fallback"
    index = run.step("Reading the default method…")
    try:
        preferences = graph_requirements.get_sign_in_preferences(run.client, run.row.target_id)
    except GraphError as exc:
        run.step_end(
            index,
            state="done",
            suffix="not available; using the usual order and retrying what Graph refuses",
            detail=f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})",
        )
        return None, "fallback"
    default_id = graph_requirements.default_method_id(methods, preferences)
    default = next((m for m in methods if m.id == default_id), None)
    if default is None:
        raw = preferences.raw_preferred_method or "none"
        run.step_end(
            index,
            state="done",
            suffix="done",
            detail=f"Entra's default ({raw}) matches no single registered method; using the "
            "usual order and retrying what Graph refuses.",
        )
        return None, "fallback"
    run.step_end(
        index, state="done", suffix="done", detail=f"{method_label(default)}: removed last"
    )
    return default.id, "signInPreferences"


def _record_method_failure(
    run: Run[ActionRequest], index: int, entry: dict[str, Any], exc: GraphError
) -> None:
    failure = {**entry, **_graph_failure(exc)}
    run.row.result = {**run.row.result, "failed": [*run.row.result["failed"], failure]}
    run.step_end(
        index,
        state="failed",
        suffix="failed",
        detail=f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})",
        event=(
            PortalEvent.Kind.ACTION_STEP,
            {"step": "method_failed", "method": entry["label"], **_graph_failure(exc)},
        ),
    )


def _revoke_step(run: Run[ActionRequest]) -> bool:
    """Revoke the sign-in sessions once (a re-run checks Graph's timestamp instead of repeating
    a revoke that was in flight). Returns False when Graph refused (recorded in the result)."""
    row = run.row
    key = "revoke_sessions"
    if key in row.completed_writes:
        return True
    started = run.was_in_flight(key)
    if started is not None:
        user = graph_users.get_user(run.client, row.target_id)
        valid_from = user.sign_in_sessions_valid_from
        # Graph stamps the revoke with its own clock: allow a minute of skew.
        if valid_from is not None and valid_from >= started - timedelta(seconds=60):
            run.write_done(key)
            row.result = {**row.result, "sessions_revoked": valid_from.isoformat()}
            run.step("Sign-in sessions were already revoked", state="done")
            return True
    index = run.step("Revoking sign-in sessions…")
    run.write_begin(key)
    try:
        graph_sessions.revoke_sign_in_sessions(run.client, row.target_id)
    except (GraphThrottled, GraphTransient) as exc:
        run.abandon_if_unprocessed(key, exc)
        raise
    except GraphError as exc:
        run.write_abandon(key)
        row.result = {**row.result, "revoke_failed": _graph_failure(exc)}
        failed = list(row.result.get("failed") or [])
        failed.append({"id": "sessions", "label": "Sign-in sessions", **_graph_failure(exc)})
        row.result = {**row.result, "failed": failed}
        run.step_end(
            index,
            state="failed",
            suffix="failed",
            detail=f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})",
        )
        return False
    run.write_done(key)
    row.result = {**row.result, "sessions_revoked": timezone.now().isoformat()}
    run.step_end(
        index,
        state="done",
        suffix="done",
        detail="Apps and browsers must sign in again; this takes a few minutes to apply.",
        event=(PortalEvent.Kind.ACTION_STEP, {"step": "sessions_revoked"}),
    )
    return True


def _run_revoke_sessions(run: Run[ActionRequest]) -> Outcome:
    run.row.result = {**run.row.result, "failed": list(run.row.result.get("failed") or [])}
    if _revoke_step(run):
        return Outcome(Status.SUCCEEDED)
    failure = run.row.result["revoke_failed"]
    return Outcome(
        Status.FAILED,
        error_code=failure["code"],
        error_message=failure["message"],
    )


def _run_issue_tap(run: Run[ActionRequest]) -> Outcome:
    """Create the pass within the tenant policy, put it in the vault, never anywhere else."""
    row = run.row
    key = "issue_tap"
    if key in row.completed_writes:
        return Outcome(Status.SUCCEEDED)
    if run.was_in_flight(key) is not None:
        run.step("The worker stopped while the pass was being issued", state="failed")
        return Outcome(
            Status.FAILED,
            error_code="OutcomeUnknown",
            error_message="The worker stopped while Graph was issuing the pass, so the pass "
            "cannot be shown. Check the person's methods, and request a new pass if needed.",
        )
    lifetime = int(row.params["lifetime_minutes"])
    usable_once = bool(row.params["usable_once"])
    kind_text = "one-time" if usable_once else "multi-use"
    index = run.step(f"Issuing a {kind_text} Temporary Access Pass for {lifetime} minutes…")
    run.write_begin(key)
    try:
        tap = graph_methods.create_temporary_access_pass(
            run.client, row.target_id, lifetime_in_minutes=lifetime, is_usable_once=usable_once
        )
    except GraphTransient as exc:
        if exc.code == "OutcomeUnknown":
            # The POST may have reached Graph: issuing again could hand out a second pass.
            run.write_done(key)  # never retried
            run.step_end(index, state="failed", suffix="outcome unknown")
            return Outcome(Status.FAILED, error=exc)
        run.write_abandon(key)  # Graph did not process it: safe to retry later
        raise
    except GraphError:
        run.write_abandon(key)
        run.step_end(index, state="failed", suffix="failed")
        raise
    # From here on Graph holds a live pass. Whatever fails before the requester can read it
    # (the vault, the journal, a lost lease, the database, a worker shutdown), the pass is
    # withdrawn: a pass nobody can be shown must not stay usable on the account.
    tap_id = tap.id
    try:
        try:
            tap_vault.tap_store(
                public_id=row.public_id, requester_id=row.requester_id, pass_value=tap.pass_value
            )
        except tap_vault.TapVaultError:
            run.write_done(key)
            withdrawn = _withdraw_tap(run, tap_id)
            run.step_end(index, state="failed", suffix="failed")
            return Outcome(
                Status.FAILED,
                error_code="VaultUnavailable",
                error_message="The pass was issued but could not be kept for you to read, so it "
                "was "
                + (
                    "withdrawn."
                    if withdrawn
                    else "NOT withdrawn: delete it from the person's methods."
                ),
            )
        run.write_done(key)
        expires = (tap.start or timezone.now()) + timedelta(
            minutes=tap.lifetime_in_minutes or lifetime
        )
        row.result = {
            **row.result,
            "tap_id": tap_id,
            "lifetime_minutes": tap.lifetime_in_minutes or lifetime,
            "usable_once": tap.is_usable_once if tap.is_usable_once is not None else usable_once,
            "valid_from": (tap.start or timezone.now()).isoformat(),
            "valid_until": expires.isoformat(),
            "reveal_until": (
                timezone.now() + timedelta(seconds=settings.PORTAL_TAP_REVEAL_TTL_SECONDS)
            ).isoformat(),
        }
        del tap
        run.step_end(
            index,
            state="done",
            suffix="done",
            detail="The pass is waiting, encrypted, for the requester to view it once.",
            event=(
                PortalEvent.Kind.ACTION_STEP,
                {"step": "tap_issued", "tap_id": row.result["tap_id"]},
            ),
        )
    except BaseException:
        # Any other failure (BaseException: a worker shutdown too), then re-raised for the
        # engine to end or defer the request. The vault entry goes first so that nothing can
        # be revealed of a pass that is being withdrawn.
        tap_vault.tap_discard(public_id=row.public_id)
        if not _withdraw_tap(run, tap_id):
            logger.error(
                "request %s: a Temporary Access Pass was issued, then the run failed, and the "
                "pass could NOT be withdrawn (method id %s)",
                row.pk,
                tap_id,
            )
        raise
    return Outcome(Status.SUCCEEDED)


def _withdraw_tap(run: Run[ActionRequest], tap_id: str) -> bool:
    method = AuthenticationMethod(
        id=tap_id,
        kind=MethodKind.TEMPORARY_ACCESS_PASS,
        odata_type="microsoft.graph.temporaryAccessPassAuthenticationMethod",
        detail="",
    )
    try:
        graph_methods.delete_method(run.client, run.row.target_id, method)
    except GraphNotFound:
        return True
    except GraphError:
        logger.warning("could not withdraw an undeliverable TAP for request %s", run.row.pk)
        return False
    return True


def _run_set_mfa_state(run: Run[ActionRequest]) -> Outcome:
    """Read the per-user MFA state, set it unless it already is so, read it back."""
    row = run.row
    desired = PerUserMfa(row.params["state"])
    key = f"mfa_state:{desired.value}"
    index = run.step("Reading the per-user MFA state…")
    before = graph_requirements.get_per_user_mfa_state(run.client, row.target_id)
    first_before = row.result.get("before", before.raw_state)
    run.step_end(index, state="done", suffix=before.raw_state or "unknown")
    accepted = {desired}
    if desired is PerUserMfa.ENABLED:
        accepted.add(PerUserMfa.ENFORCED)  # Graph's own promotion for users with methods
    # A write that was in flight when a worker died counts as done if Graph shows its effect.
    landed = key in row.completed_writes or (
        run.was_in_flight(key) is not None and before.state in accepted
    )
    if landed or before.state is desired:
        if landed:
            run.write_done(key)
        row.result = {**row.result, "before": first_before, "after": before.raw_state}
        note = "is now" if landed else "was already"
        run.step(f"Per-user MFA {note} {before.raw_state}", state="done")
        return Outcome(Status.SUCCEEDED)
    index = run.step(f"Setting per-user MFA to {desired.value}…")
    run.write_begin(key)
    try:
        graph_requirements.set_per_user_mfa_state(run.client, row.target_id, desired)
    except GraphTransient as exc:
        if exc.code != "OutcomeUnknown":
            run.write_abandon(key)
        raise  # OutcomeUnknown stays in flight: the re-run reads the state first
    except GraphError:
        run.write_abandon(key)
        run.step_end(index, state="failed", suffix="failed")
        raise
    run.write_done(key)
    after = graph_requirements.get_per_user_mfa_state(run.client, row.target_id)
    row.result = {**row.result, "before": first_before, "after": after.raw_state}
    if after.state in accepted:
        detail = ""
        if after.state is not desired:
            detail = "Graph set it to enforced because the person already has methods registered."
        run.step_end(
            index,
            state="done",
            suffix=f"done ({after.raw_state})",
            detail=detail,
            event=(
                PortalEvent.Kind.ACTION_STEP,
                {"step": "mfa_state_set", "before": first_before, "after": after.raw_state},
            ),
        )
        return Outcome(Status.SUCCEEDED)
    run.step_end(index, state="failed", suffix=f"still {after.raw_state}")
    return Outcome(
        Status.FAILED,
        error_code="NotApplied",
        error_message=f"Graph accepted the change but still reports {after.raw_state}.",
    )


def _run_delete_method(run: Run[ActionRequest]) -> Outcome:
    row = run.row
    entry = {
        "id": row.params["method_id"],
        "type": row.params["method_type"],
        "phone_type": None,
        "label": row.params.get("method_label") or "method",
    }
    if entry["type"].endswith("phoneAuthenticationMethod"):
        # Phone method ids are fixed per phone type (GRAPH.md).
        entry["phone_type"] = {
            "3179e48a-750b-4051-897c-87b9720928f7": "mobile",
            "b6332ec1-7057-4abe-9331-3d72feddfe41": "alternateMobile",
            "e37fc753-ff3b-4958-9484-eaa9425c82bc": "office",
        }.get(entry["id"])
    key = f"delete:{entry['id']}"
    row.result = {"removed": [], "failed": [], **row.result}
    if key in row.completed_writes:
        return Outcome(Status.SUCCEEDED)
    in_flight = run.was_in_flight(key) is not None
    index = run.step(f"Removing {entry['label']}…")
    run.write_begin(key)
    try:
        graph_methods.delete_method(run.client, row.target_id, _method_from_entry(entry))
    except GraphNotFound as exc:
        if not in_flight:
            run.write_abandon(key)
            run.step_end(index, state="failed", suffix="failed", detail="It is not registered.")
            row.result = {**row.result, "failed": [{**entry, **_graph_failure(exc)}]}
            return Outcome(Status.FAILED, error=exc)
    except (GraphThrottled, GraphTransient) as exc:
        run.abandon_if_unprocessed(key, exc)
        raise
    except GraphError as exc:
        run.write_abandon(key)
        row.result = {**row.result, "failed": [{**entry, **_graph_failure(exc)}]}
        run.step_end(
            index,
            state="failed",
            suffix="failed",
            detail=f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})",
        )
        return Outcome(Status.FAILED, error=exc)
    run.write_done(key)
    row.result = {**row.result, "removed": [entry]}
    run.step_end(
        index,
        state="done",
        suffix="done",
        event=(
            PortalEvent.Kind.ACTION_STEP,
            {"step": "method_removed", "method": entry["label"], "method_id": entry["id"]},
        ),
    )
    return Outcome(Status.SUCCEEDED)


RUNNERS: dict[str, Callable[[Run[ActionRequest]], Outcome]] = {
    ActionKind.REREGISTER: _run_reregister,
    ActionKind.REVOKE_SESSIONS: _run_revoke_sessions,
    ActionKind.ISSUE_TAP: _run_issue_tap,
    ActionKind.SET_MFA_STATE: _run_set_mfa_state,
    ActionKind.DELETE_METHOD: _run_delete_method,
}


# Kinds whose writes change what mfa.person_cache holds (methods, default, per-user MFA state).
_CHANGES_SECURITY_INFO = frozenset(
    {
        ActionKind.REREGISTER,
        ActionKind.ISSUE_TAP,
        ActionKind.SET_MFA_STATE,
        ActionKind.DELETE_METHOD,
    }
)


def run_action(run: Run[ActionRequest]) -> Outcome:
    """The runner of the request's kind.

    Runners never read mfa.person_cache: each reads Graph afresh before it writes. When one
    ends, the person's cached security info is forgotten (a re-registration instead refills it
    with its verifying re-list, which is fresh), so the person page never shows the state from
    before the portal's own write.
    """
    kind = run.row.kind
    try:
        outcome = RUNNERS[kind](run)
    except BaseException:
        # A write may have landed before the failure (or the deferral): read it again.
        if kind in _CHANGES_SECURITY_INFO:
            person_cache.forget(run.row.target_id)
        raise
    if kind in _CHANGES_SECURITY_INFO and kind != ActionKind.REREGISTER:
        person_cache.forget(run.row.target_id)
    return outcome
