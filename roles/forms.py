"""Forms of /roles/: add a holder, remove a holder, decide a change.

Forms check shape only; who may do what, the guards and what Graph says are decided by
``roles.services`` and come back as ``PolicyError`` messages.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, time
from typing import Any

from django import forms
from django.conf import settings
from django.utils import timezone

from roles.catalog import managed_roles
from roles.models import HoldKind

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
PRINCIPAL_RE = re.compile(rf"^(user|group):({_GUID})$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
JUSTIFICATION_MIN = 10
JUSTIFICATION_MAX = 2000


def new_idempotency_key() -> str:
    return secrets.token_urlsafe(24)


class _KeyedForm(forms.Form):
    """A hidden token makes one rendered form one request, however often it is posted."""

    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_idempotency_key())

    def clean_idempotency_key(self) -> str:
        key = str(self.cleaned_data["idempotency_key"])
        if not _KEY_RE.match(key):
            raise forms.ValidationError("The form is damaged: reload the page.")
        return key


class AddHolderForm(_KeyedForm):
    """Who gets which role, how, until when, and why. ``principal`` is ``user:<id>`` or
    ``group:<id>``, chosen from the search results or the role-assignable groups.

    ``pim_unavailable``: why the tenant has no PIM (``accounts.capabilities``), or empty. When
    set, the form offers only "Active and permanent" (eligible and time-bound assignments are
    PIM's) and has no end date; another kind posted anyway is refused with that reason."""

    role = forms.ChoiceField(label="Role")
    principal = forms.CharField(
        label="Person or group",
        max_length=48,
        error_messages={"required": "Choose a person or a role-assignable group."},
    )
    kind = forms.ChoiceField(
        label="How",
        widget=forms.RadioSelect,
        choices=[
            (HoldKind.ACTIVE_PERMANENT, "Active and permanent"),
            (HoldKind.ACTIVE_UNTIL, "Active until a date"),
            (HoldKind.ELIGIBLE_UNTIL, "Eligible (PIM) until a date"),
        ],
        initial=HoldKind.ELIGIBLE_UNTIL,
    )
    ends_on = forms.DateField(
        label="Until (date)",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The role ends at the end of this day. Needed unless permanent.",
    )
    justification = forms.CharField(
        label="Justification",
        min_length=JUSTIFICATION_MIN,
        max_length=JUSTIFICATION_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    ticket = forms.CharField(label="Ticket", max_length=64)

    def __init__(self, *args: Any, pim_unavailable: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role = self.fields["role"]
        assert isinstance(role, forms.ChoiceField)
        role.choices = [(r, r) for r in managed_roles()]
        self.fields["ticket"].help_text = f"For example {settings.PORTAL_TICKET_HINT}."
        self.pim_unavailable = pim_unavailable
        if pim_unavailable:
            kind = self.fields["kind"]
            assert isinstance(kind, forms.ChoiceField)
            kind.choices = [(HoldKind.ACTIVE_PERMANENT, "Active and permanent")]
            kind.initial = HoldKind.ACTIVE_PERMANENT
            kind.help_text = "Eligible and time-bound assignments need PIM (Entra ID P2)."
            kind.error_messages["invalid_choice"] = (
                f"Eligible and time-bound assignments are unavailable: {pim_unavailable}"
            )
            del self.fields["ends_on"]

    def clean_principal(self) -> tuple[str, str]:
        match = PRINCIPAL_RE.match(str(self.cleaned_data["principal"]).strip())
        if not match:
            raise forms.ValidationError("Choose a person or a role-assignable group.")
        return match.group(1), match.group(2).lower()

    def ends_at(self) -> datetime | None:
        """The end of the chosen day in the portal's time zone, or None."""
        day = self.cleaned_data.get("ends_on")
        if day is None:
            return None
        return timezone.make_aware(datetime.combine(day, time(23, 59)))


class RemoveHolderForm(_KeyedForm):
    """Why a holder goes (a ticket is optional for removals)."""

    justification = forms.CharField(
        label="Justification",
        min_length=JUSTIFICATION_MIN,
        max_length=JUSTIFICATION_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    ticket = forms.CharField(label="Ticket (optional)", max_length=64, required=False)


class DecisionForm(forms.Form):
    comment = forms.CharField(
        label="Comment",
        required=False,
        max_length=JUSTIFICATION_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required to reject.",
    )
