"""Loaded first by pytest from the project folder; tests/conftest.py has the fixtures."""

# Every stream entry a test leaves is checked against the published schemas.
pytest_plugins = ["tests.entry_schemas"]
