"""The Baton worker: config, registration, the local dev stack, and what every Baton client shares with it
(the connection to Temporal, the data converter, payload encryption)."""
