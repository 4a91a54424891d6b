"""The preflight for admins: ``manage.py tenant_check`` and its Admin page (/preflight/).

Read-only checks of everything a real tenant must provide before the portal can be trusted with
it (credentials, permissions, app roles, the app registration, licence, TAP policy, beta
endpoints, audit log, protected groups, budget settings), each with the exact fix. The top layer
of the portal's apps: it may import every other app.
"""
