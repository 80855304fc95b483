"""PostgreSQL login roles of the services, created by migrations/003_service_roles.sql.

The infrastructure imports these to set `DB_IAM_USER` and to scope each service's
`rds-db:connect` permission to its own database user.
"""

API_DB_USER = "media_api"
WORKER_DB_USER = "media_worker"
