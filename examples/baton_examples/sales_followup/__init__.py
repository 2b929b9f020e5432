"""Sales follow-up after a demo: buyer signals, a drafted e-mail and a meeting slot, sent once a manager approves."""
