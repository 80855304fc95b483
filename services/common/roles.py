"""The services' PostgreSQL login roles, declared in `services/contract.py`.

Kept as a re-export for the test suites that import the names from here.
"""

from services.contract import API_DB_USER, WORKER_DB_USER

__all__ = ["API_DB_USER", "WORKER_DB_USER"]
