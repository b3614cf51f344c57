"""The ``slotwise`` command's commands and groups, one module each."""
