"""Gang scheduling: all-or-nothing admission and placement of pod groups."""
