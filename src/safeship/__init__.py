"""safeship."""
