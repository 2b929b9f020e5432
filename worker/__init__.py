"""The Baton worker: config, registration, and the local dev stack."""
