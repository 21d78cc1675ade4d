"""Router modules of the system-test application."""
