"""The one durable-request engine: every flow (helpdesk actions, directory role changes, and bulk
operations later) is a database row that is its own outbox, run by ``outbox.engine``.

Layering: ``mfa -> roles -> outbox -> (audit, accounts, graph)``. Nothing here imports a flow.
"""
