-- The cross-tenant ("system") context is a database role, not a setting.
--
-- Until now any session could call set_config('app.system', 'on', true) and read every tenant: a
-- leaked application credential, or one SQL injection, saw the whole fleet. From here on the policies'
-- app_is_system() is true only for a session whose current role has the privileges of
-- autodispatch_system; autodispatch_app is not a member of it and cannot SET ROLE to it, so the
-- application role sees one tenant at most whatever it sets. The runtime reaches the system context
-- through its own pool (AUTODISPATCH_SYSTEM_DATABASE_URL, or the owner's login with SET LOCAL ROLE).

CREATE OR REPLACE FUNCTION app_is_system() RETURNS boolean
LANGUAGE sql STABLE AS $$
    -- No such role (not created yet on a managed database): nobody is the system.
    SELECT coalesce(
        pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = 'autodispatch_system'), 'USAGE'),
        false)
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_system') THEN
        BEGIN
            CREATE ROLE autodispatch_system LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot create role autodispatch_system; create it by hand (docs/security.md)';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_system') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO autodispatch_system', current_database());
        GRANT USAGE ON SCHEMA public TO autodispatch_system;
        -- The same table privileges as the application (every later grant to it included); only the
        -- policies tell the two apart.
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'autodispatch_app') THEN
            GRANT autodispatch_app TO autodispatch_system;
        END IF;
        -- The owner reaches the system context with SET LOCAL ROLE when no separate login is configured.
        IF NOT pg_has_role(current_user, 'autodispatch_system', 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT autodispatch_system TO %I', current_user);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE NOTICE 'cannot grant autodispatch_system to %; set AUTODISPATCH_SYSTEM_DATABASE_URL', current_user;
            END;
        END IF;
    END IF;
END $$;
