"""Every side effect Baton performs: model calls, tool calls (into the systems a package brings).

Nothing here imports `workflows`; workflows import the contracts defined here.
"""
