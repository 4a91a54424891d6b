"""The helpdesk pages (URL namespace ``mfa``), one module per job:

- ``people``: search, the person page's shell and its panels (methods, per-user MFA and Entra
  events, each a fragment; ``mfa.panels`` decides cache, read now or wait);
- ``actions``: the form of one action, which makes the request;
- ``verification``: caller verification (send a code, check it, a manual check) and the demo
  mailbox where the codes land;
- ``action_requests``: the request list, one request (live status), cancel and the TAP reveal;
- ``approvals``: the Lead's queue, approve or reject, and the rate-limit override;
- ``pages``: what the pages share (htmx detection, a Graph failure as a page, reading a person).

Each view is short: a role decorator naming a tuple of ``accounts.roles``, a ``get_..._for_user``
rule from ``mfa.permissions``, one service or selector (``mfa.selectors``) call, then a redirect
or a page / htmx fragment. Graph failures are shown with Graph's code and request-id, never
hidden.
"""
