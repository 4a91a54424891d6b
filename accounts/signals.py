"""What accounts announces about sign-in and sign-out, for the apps that record it (audit).

accounts imports no audit module (the portal's one-way dependencies): its views send these
signals at the moment they decide, and audit's receivers (``audit.receivers``, connected in
``AuditConfig.ready()``) write the ``PortalEvent``. Each is sent with ``sender`` the user's class
and the keyword arguments ``request`` (the ``HttpRequest``) and ``user`` (the signed-in user).

Not Django's ``user_logged_in`` / ``user_logged_out``: those fire on every ``login()`` and
``logout()``, including the test client's ``force_login`` and ``logout``, and ``user_logged_in``
fires before the portal knows whether the person holds a portal role.
"""

from __future__ import annotations

from django.dispatch import Signal

# A sign-in finished and the person holds a portal role.
signed_in = Signal()
# A sign-in finished but the portal refused the person; also sent with ``reason`` (a str).
sign_in_refused = Signal()
# A signed-in person asked to sign out; sent before the session is flushed. Also sent by
# ``accounts.middleware`` with ``reason`` (a str) when the portal ends a session itself (a portal
# role removed or the account disabled in Entra).
signed_out = Signal()
