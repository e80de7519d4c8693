"""Protocol-level fakes of servers that cannot be installed here."""
