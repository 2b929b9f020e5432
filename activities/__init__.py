"""Every side effect Baton performs: model calls, tool calls, systems of record.

Nothing here imports `workflows`; workflows import the contracts defined here.
"""
