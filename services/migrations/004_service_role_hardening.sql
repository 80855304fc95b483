-- H5: the services' roles can do exactly what their code needs, and no more. 003 granted
-- what they need; this takes away what PostgreSQL gives every role (PUBLIC) by default.
-- Re-runnable: REVOKE and GRANT of a privilege already in that state change nothing.

-- Temporary objects: TEMPORARY on a database is PUBLIC's by default. Without it a role
-- can create neither temporary tables nor objects in pg_temp (functions there shadow
-- nothing in pg_catalog but would be another place to hide code). The owner (the role
-- that runs the migrations) keeps its own TEMPORARY through its ownership.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, media_api, media_worker',
                   current_database());
END
$$;

-- The migrations' advisory lock (services/common/migrations.py): the pg_advisory_*
-- functions are EXECUTE for PUBLIC and no lock ACL exists, so any role could take the
-- migrations' key and hold a deploy until its own statement timeout. Only the functions'
-- owner (the bootstrap superuser) can change their privileges: a migrator running as a
-- superuser revokes them from PUBLIC and grants them to itself and the database owner;
-- on Amazon RDS / Aurora the master user is not a superuser and the functions belong to
-- `rdsadmin`, so there this is skipped with a notice (services/README.md, "Database
-- roles").
DO $$
DECLARE
    function_name regprocedure;
    owner_name name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                        WHERE datname = current_database());
BEGIN
    FOR function_name IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
          AND p.proname LIKE 'pg\_%advisory\_%lock%'
    LOOP
        IF NOT pg_has_role(current_user, (SELECT proowner FROM pg_proc
                                          WHERE oid = function_name), 'USAGE') THEN
            RAISE NOTICE 'cannot revoke EXECUTE on % from PUBLIC: % does not own it',
                function_name, current_user;
            CONTINUE;
        END IF;
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', function_name);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I, %I',
                       function_name, current_user, owner_name);
    END LOOP;
END
$$;

-- Settings: no role-level default may loosen the services' limits. PostgreSQL lets every
-- role ALTER ROLE itself (its password and its own defaults, e.g. statement_timeout = 0),
-- and no privilege takes that away; the services make it harmless instead: their
-- connections set statement_timeout in the startup packet, which outranks role defaults,
-- and they log in with IAM tokens only (rds_iam), so a password a role sets itself is
-- never used. Clear whatever a role may have set before this migration ran.
ALTER ROLE media_api RESET ALL;
ALTER ROLE media_worker RESET ALL;
