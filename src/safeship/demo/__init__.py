"""``safeship demo``: the staging incident replayed on the local target, and prevented."""
