"""Caller verification on the person page (send a code, check the code read back, record a
manual check), and the demo mailbox where the codes land instead of being sent.

Every answer goes back to the verification card (``#verify``) with its message inside the card,
next to the field it is about (``mfa.templatetags.card_notices``): a message at the top of the
page would sit above the viewport after the jump to the card."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.roles import ADMIN_ROLES, REQUESTER_ROLES, has_role, role_required
from mfa.forms import CheckCodeForm, ManualCheckForm, SendCodeForm
from mfa.mailbox import mailbox_active, messages_for
from mfa.permissions import get_pending_verification_for_user
from mfa.templatetags.card_notices import card_tag
from mfa.verification import (
    VerificationFailed,
    code_destinations,
    verification_check_code,
    verification_record_manual,
    verification_send_code,
)
from mfa.views.pages import profile_or_problem

MAILBOX_SHOWN = 50


# The card's slots: next to the code field, the send form, the manual form, and the
# "Caller verified" notice.
CODE = card_tag("verify-code")
SEND = card_tag("verify-send")
MANUAL = card_tag("verify-manual")
DONE = card_tag("verify-done")


def _back_to_verify(oid: str) -> HttpResponse:
    return redirect(reverse("mfa:user_detail", args=[oid]) + "#verify")


@require_POST
@role_required(*REQUESTER_ROLES)
def verify_send(request: HttpRequest, oid: str) -> HttpResponse:
    """Email a one-time code to the person's manager or alternate address."""
    found = profile_or_problem(request, oid)
    if isinstance(found, HttpResponse):
        return found
    form = SendCodeForm(request.POST, destinations=code_destinations(found))
    if not form.is_valid():
        messages.error(request, "Choose where to send the code.", extra_tags=SEND)
        return _back_to_verify(oid)
    try:
        verification = verification_send_code(
            agent=request.user,
            profile=found,
            destination=form.cleaned_data["destination"],
            http_request=request,
        )
    except VerificationFailed as exc:
        messages.error(request, exc.message, extra_tags=SEND)
    else:
        messages.success(
            request,
            f"Code sent to {verification.sent_to_masked}. Ask the caller to read it back.",
            extra_tags=CODE,
        )
    return _back_to_verify(oid)


@require_POST
@role_required(*REQUESTER_ROLES)
def verify_check(request: HttpRequest, oid: str) -> HttpResponse:
    """Check the code the caller read back."""
    form = CheckCodeForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error), extra_tags=CODE)
        return _back_to_verify(oid)
    verification = get_pending_verification_for_user(
        request.user, oid, form.cleaned_data["verification"]
    )
    try:
        verification_check_code(
            verification=verification,
            agent=request.user,
            code=form.cleaned_data["code"],
            http_request=request,
        )
    except VerificationFailed as exc:
        # With tries left the code form stays: the message goes under its field. Without, the
        # form is gone and the message goes to the way to send a new code.
        messages.error(request, exc.message, extra_tags=CODE if exc.tries_left else SEND)
    else:
        messages.success(request, "Caller verified. You can act now.", extra_tags=DONE)
    return _back_to_verify(oid)


@require_POST
@role_required(*REQUESTER_ROLES)
def verify_manual(request: HttpRequest, oid: str) -> HttpResponse:
    """Record a manual check with the agent's evidence."""
    found = profile_or_problem(request, oid)
    if isinstance(found, HttpResponse):
        return found
    form = ManualCheckForm(request.POST)
    if not form.is_valid():
        for name, errors in form.errors.items():
            label = form.fields[name].label if name in form.fields else ""
            for error in errors:
                messages.error(
                    request, f"{label}: {error}" if label else str(error), extra_tags=MANUAL
                )
        return _back_to_verify(oid)
    try:
        verification_record_manual(
            agent=request.user,
            profile=found,
            check=form.cleaned_data["check"],
            evidence=form.cleaned_data["evidence"],
            http_request=request,
        )
    except VerificationFailed as exc:
        messages.error(request, exc.message, extra_tags=MANUAL)
        return _back_to_verify(oid)
    messages.success(request, "Manual check recorded. You can act now.", extra_tags=DONE)
    return _back_to_verify(oid)


@require_GET
@role_required()
def mailbox(request: HttpRequest) -> HttpResponse:
    """``/mailbox/``: the emails the demo kept instead of sending (404 outside the demo).

    Each reader sees the messages sent to their own address (their UPN or email); an Admin sees
    every message. A verification code goes to the target's manager, never to the agent: an agent
    who could read the whole mailbox could verify any caller alone.
    """
    if not mailbox_active():
        raise Http404("The mailbox exists only in the demo")
    profile = getattr(request.user, "portal_profile", None)
    addresses = [str(getattr(request.user, "email", "") or ""), str(getattr(profile, "upn", ""))]
    everyone = has_role(request.user, *ADMIN_ROLES)
    return render(
        request,
        "mfa/mailbox.html",
        {
            "messages_list": messages_for(addresses, everyone=everyone, limit=MAILBOX_SHOWN),
            "reader_sees_everyone": everyone,
            "reader_addresses": sorted({a for a in addresses if a}),
        },
    )
