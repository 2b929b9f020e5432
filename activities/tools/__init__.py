"""Tools: a registry of typed, effect-declared calls and the example systems of record."""
