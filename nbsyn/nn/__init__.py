"""Blocks shared by more than one paper (a block moves here only when two papers use it)."""
