"""A package installed only in the application's venv (RouteMQ system tests)."""


def double(n: int) -> int:
    return 2 * n
