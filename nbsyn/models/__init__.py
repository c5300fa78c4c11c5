"""One module per paper (and ``toy`` for the foundations notebook)."""
