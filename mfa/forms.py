"""Forms of the helpdesk pages: caller verification, the five action forms, approvals.

Forms validate shape only (required fields, the ticket pattern, bounds the tenant publishes);
the rules that need state (verification age, rate limit, per-target lock, tier) are checked by
``mfa.services`` and come back as ``PolicyError`` messages.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from django import forms
from django.conf import settings

from graph.methods import TAP_MAX_LIFETIME, TAP_MIN_LIFETIME
from graph.results import (
    AuthenticationMethod,
    PerUserMfa,
    PerUserMfaState,
    TemporaryAccessPassPolicy,
)
from mfa.models import ActionKind
from mfa.verification import (
    CODE_DIGITS,
    MAX_EVIDENCE_LENGTH,
    MIN_EVIDENCE_LENGTH,
    CodeDestination,
)

SEARCH_MAX_LENGTH = 120
REASON_MIN_LENGTH = 10
REASON_MAX_LENGTH = 2000
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def new_idempotency_key() -> str:
    """A fresh token for one rendered action form (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


class SendCodeForm(forms.Form):
    """Where to email the one-time code: the choices are the target's known addresses."""

    destination = forms.ChoiceField(label="Send the code to", widget=forms.RadioSelect)

    @staticmethod
    def choices_for(destinations: list[CodeDestination]) -> list[tuple[str, str]]:
        """The field's choices for ``destinations``: (kind, "label: masked address")."""
        return [(d.kind, f"{d.label}: {d.masked}") for d in destinations]

    def __init__(self, *args: Any, destinations: list[CodeDestination], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["destination"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = self.choices_for(destinations)
        if destinations:
            field.initial = destinations[0].kind


class CheckCodeForm(forms.Form):
    """The code the caller reads back (spaces and dashes allowed between the digits)."""

    verification = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    code = forms.CharField(
        label="Code the caller reads back",
        max_length=16,
        widget=forms.TextInput(
            attrs={
                "inputmode": "numeric",
                "autocomplete": "one-time-code",
                "pattern": r"[0-9 \-]*",
                "autofocus": True,
                "size": 8,
            }
        ),
    )

    def clean_code(self) -> str:
        code = "".join(ch for ch in self.cleaned_data["code"] if ch not in " -")
        if not (code.isascii() and code.isdigit() and len(code) == CODE_DIGITS):
            raise forms.ValidationError(f"The code has {CODE_DIGITS} digits.")
        return code


class ManualCheckForm(forms.Form):
    """A manual check from ``PORTAL_MANUAL_CHECKS``, with what the agent saw."""

    check = forms.ChoiceField(label="Check you made", widget=forms.RadioSelect)
    evidence = forms.CharField(
        label="Evidence",
        min_length=MIN_EVIDENCE_LENGTH,
        max_length=MAX_EVIDENCE_LENGTH,
        help_text="What you checked and what you saw, so a reviewer can follow it later.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["check"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(c, c) for c in settings.PORTAL_MANUAL_CHECKS]


class ActionForm(forms.Form):
    """Fields every action needs: reason, ticket and the hidden idempotency token.

    ``params()`` gives the kind-specific ``ActionRequest.params`` (never a secret).
    """

    kind: str = ""

    reason = forms.CharField(
        label="Reason",
        min_length=REASON_MIN_LENGTH,
        max_length=REASON_MAX_LENGTH,
        help_text="Why this is needed, in a sentence: it is recorded with your name.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    ticket = forms.CharField(label="Ticket", max_length=64)
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)
    # Shown only when the agent did the same to this person moments ago (the template's
    # repeat block): doing it again needs both.
    confirm_repeat = forms.BooleanField(label="Yes, do it again", required=False)
    repeat_reason = forms.CharField(
        label="Why again",
        required=False,
        max_length=REASON_MAX_LENGTH,
        help_text="Why the first one is not enough: it is recorded with the new request.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    REPEAT_FIELDS = ("confirm_repeat", "repeat_reason")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["ticket"].help_text = f"For example {settings.PORTAL_TICKET_HINT}."
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_idempotency_key())

    @property
    def action_fields(self) -> list[forms.BoundField]:
        """The visible fields of the action itself (the repeat confirmation is shown apart)."""
        return [f for f in self.visible_fields() if f.name not in self.REPEAT_FIELDS]

    @property
    def repeat_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.REPEAT_FIELDS]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        why = str(cleaned.get("repeat_reason") or "").strip()
        cleaned["repeat_reason"] = why
        if cleaned.get("confirm_repeat") and len(why) < REASON_MIN_LENGTH:
            self.add_error(
                "repeat_reason",
                f"Say why you are doing this again, in at least {REASON_MIN_LENGTH} characters.",
            )
        return cleaned

    def confirmed_repeat_reason(self) -> str:
        """The reason that confirms a repeat ("" unless the box is ticked)."""
        if not self.cleaned_data.get("confirm_repeat"):
            return ""
        return str(self.cleaned_data.get("repeat_reason") or "")

    def clean_ticket(self) -> str:
        ticket = str(self.cleaned_data["ticket"]).strip().upper()
        if not re.fullmatch(settings.PORTAL_TICKET_PATTERN, ticket, flags=re.IGNORECASE):
            raise forms.ValidationError(
                f"That is not a ticket reference. Use the form {settings.PORTAL_TICKET_HINT}."
            )
        return ticket

    def clean_reason(self) -> str:
        return str(self.cleaned_data["reason"]).strip()

    def clean_idempotency_key(self) -> str:
        key = str(self.cleaned_data["idempotency_key"])
        if not _IDEMPOTENCY_KEY.match(key):
            raise forms.ValidationError("The form is damaged: reload the page and try again.")
        return key

    def params(self) -> dict[str, Any]:
        return {}


class ReregisterForm(ActionForm):
    kind = ActionKind.REREGISTER

    revoke_sessions = forms.BooleanField(
        label="Also revoke sign-in sessions",
        required=False,
        help_text="Signs the person out everywhere, so a stolen session cannot be reused.",
    )

    def params(self) -> dict[str, Any]:
        return {"revoke_sessions": bool(self.cleaned_data["revoke_sessions"])}


class RevokeSessionsForm(ActionForm):
    kind = ActionKind.REVOKE_SESSIONS


class IssueTapForm(ActionForm):
    """Lifetime and one-time use, within the tenant's TAP policy when it is known."""

    kind = ActionKind.ISSUE_TAP

    lifetime_minutes = forms.IntegerField(
        label="Lifetime (minutes)", min_value=TAP_MIN_LIFETIME, max_value=TAP_MAX_LIFETIME
    )
    usable_once = forms.BooleanField(
        label="One-time use",
        required=False,
        initial=True,
        help_text="The pass stops working after its first sign-in.",
    )

    def __init__(
        self, *args: Any, tap_policy: TemporaryAccessPassPolicy | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tap_policy = tap_policy
        lifetime = self.fields["lifetime_minutes"]
        assert isinstance(lifetime, forms.IntegerField)
        low = TAP_MIN_LIFETIME
        high = TAP_MAX_LIFETIME
        default = 60
        if tap_policy is not None:
            low = max(low, tap_policy.minimum_lifetime_in_minutes or low)
            high = min(high, tap_policy.maximum_lifetime_in_minutes or high)
            default = tap_policy.default_lifetime_in_minutes or default
        default = min(max(default, low), high)
        # The field's own validators keep Graph's bounds; clean_lifetime_minutes the tenant's.
        lifetime.widget.attrs.update({"min": low, "max": high})
        lifetime.help_text = f"Between {low} and {high} minutes (the tenant's policy)."
        self.initial.setdefault("lifetime_minutes", default)
        self.lifetime_bounds = (low, high)
        if tap_policy is not None and tap_policy.is_usable_once:
            usable = self.fields["usable_once"]
            usable.disabled = True
            usable.initial = True
            usable.help_text = "The tenant's policy allows one-time passes only."

    def clean_lifetime_minutes(self) -> int:
        value = int(self.cleaned_data["lifetime_minutes"])
        low, high = self.lifetime_bounds
        if not low <= value <= high:
            raise forms.ValidationError(f"Choose between {low} and {high} minutes.")
        return value

    def clean_usable_once(self) -> bool:
        if self.tap_policy is not None and self.tap_policy.is_usable_once:
            return True
        return bool(self.cleaned_data["usable_once"])

    def params(self) -> dict[str, Any]:
        return {
            "lifetime_minutes": self.cleaned_data["lifetime_minutes"],
            "usable_once": self.cleaned_data["usable_once"],
        }


MFA_STATE_CHOICES: list[tuple[str, str]] = [
    (PerUserMfa.ENABLED.value, "Enabled: asked to register at next sign-in"),
    (PerUserMfa.ENFORCED.value, "Enforced: MFA required at every sign-in"),
    (PerUserMfa.DISABLED.value, "Disabled"),
]


class SetMfaStateForm(ActionForm):
    """The new per-user MFA state. With ``current_state`` (the person's state as last read, from
    the person cache) the form says which choice is in force now and refuses choosing it again
    (nothing would change); without, it says the state is not known."""

    kind = ActionKind.SET_MFA_STATE

    state = forms.ChoiceField(
        label="New per-user MFA state", choices=MFA_STATE_CHOICES, widget=forms.RadioSelect
    )

    def __init__(
        self, *args: Any, current_state: PerUserMfaState | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.current_state = current_state
        field = self.fields["state"]
        assert isinstance(field, forms.ChoiceField)
        now = current_state.state.value if current_state and current_state.state else ""
        field.choices = [
            (value, f"{label} (now)" if value == now else label)
            for value, label in MFA_STATE_CHOICES
        ]
        if current_state is None:
            field.help_text = "The current state is not known: the person page shows it."
        else:
            shown = (current_state.raw_state or "unknown").capitalize()
            field.help_text = f"Now: {shown}."

    @property
    def current_label(self) -> str:
        """The state in force now, as a word ("Enforced"), or "" when it is not known."""
        if self.current_state is None:
            return ""
        return (self.current_state.raw_state or "unknown").capitalize()

    def clean_state(self) -> str:
        state = str(self.cleaned_data["state"])
        current = self.current_state
        if current is not None and current.state is not None and current.state.value == state:
            raise forms.ValidationError(
                f"Per-user MFA is already {state} (as last read from Entra): choose another "
                "state. If it changed since, refresh the person page first."
            )
        return state

    def params(self) -> dict[str, Any]:
        return {"state": self.cleaned_data["state"]}


class DeleteMethodForm(ActionForm):
    """One deletable method of the target, listed when the form is built."""

    kind = ActionKind.DELETE_METHOD

    method_id = forms.ChoiceField(label="Method to delete", widget=forms.RadioSelect)

    def __init__(
        self, *args: Any, methods: list[AuthenticationMethod] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.methods = {m.id: m for m in (methods or []) if m.kind.deletable}
        field = self.fields["method_id"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(m.id, method_label(m)) for m in self.methods.values()]

    def params(self) -> dict[str, Any]:
        method = self.methods[self.cleaned_data["method_id"]]
        return {
            "method_id": method.id,
            "method_type": method.odata_type,
            "method_label": method_label(method),
        }


def method_label(method: AuthenticationMethod) -> str:
    """``Phone (mobile +44 ******0123)``: the kind's name and its masked detail."""
    name = METHOD_NAMES.get(method.kind.type_name, method.odata_type or "Unknown method")
    return f"{name} ({method.detail})" if method.detail else name


METHOD_NAMES: dict[str, str] = {
    "phoneAuthenticationMethod": "Phone",
    "microsoftAuthenticatorAuthenticationMethod": "Authenticator app",
    "softwareOathAuthenticationMethod": "Software token (OATH)",
    "fido2AuthenticationMethod": "Security key (FIDO2)",
    "emailAuthenticationMethod": "Email",
    "windowsHelloForBusinessAuthenticationMethod": "Windows Hello for Business",
    "temporaryAccessPassAuthenticationMethod": "Temporary Access Pass",
    "passwordAuthenticationMethod": "Password",
    "platformCredentialAuthenticationMethod": "Platform credential",
}

ACTION_FORMS: dict[str, type[ActionForm]] = {
    ActionKind.REREGISTER: ReregisterForm,
    ActionKind.REVOKE_SESSIONS: RevokeSessionsForm,
    ActionKind.ISSUE_TAP: IssueTapForm,
    ActionKind.SET_MFA_STATE: SetMfaStateForm,
    ActionKind.DELETE_METHOD: DeleteMethodForm,
}


class DecisionForm(forms.Form):
    """A lead's approval or rejection, with the comment recorded beside it."""

    comment = forms.CharField(
        label="Comment",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded with your decision and shown to the requester.",
    )


class RateOverrideForm(forms.Form):
    """A lead lets one agent go past the action rate limit for a short while."""

    agent = forms.ChoiceField(label="Agent")
    comment = forms.CharField(
        label="Why", max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args: Any, agents: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["agent"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = agents
