"""Tools: the registry of typed, effect-declared calls, the grants that bound them and the one activity that runs them."""
