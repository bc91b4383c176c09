#!/usr/bin/python3
"""Least privilege: each attack a hostile role could try on leadscore, as that role (a real login, not a
superuser), against the live trigger, a configuration change (recompute), advance_stages and the reads.
After each: the attacker is still not superuser, read nothing from pg_authid nor from a column it may
not SELECT, and the rule was refused (with its message) or harmless. Then the read paths under
row-level security (two sales reps, two territories), a BI reader, the scheduler role, and PUBLIC.

Run against a throwaway server with Debian's python3 and psycopg2:
    scripts/with_pg.sh /usr/bin/python3 test/security/security.py
Prints ok / not ok lines and "N passed, N failed"; exits non-zero if a check failed.
"""
import os
import sys

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pylib'))
import checks  # noqa: E402
from checks import check  # noqa: E402


def connect(user=None):
    """The cluster's owner, or one of the roles made below (each with the password 'pw')."""
    return checks.connect(user, "pw" if user else None, autocommit=True)


def run(conn, sql, args=None):
    """Runs sql; returns (rows or None, error message or None)."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return (cur.fetchall() if cur.description else None), None
    except psycopg2.Error as e:
        return None, (e.pgerror or str(e)).strip()


admin = connect()
db = admin.get_dsn_parameters()["dbname"]
for stmt in [
    "DROP EXTENSION IF EXISTS leadscore CASCADE",
    "DROP SCHEMA IF EXISTS crm, evil CASCADE",
]:
    run(admin, stmt)
roles = ["attacker", "crm_app", "dbowner", "rep_east", "rep_west", "bi", "scheduler", "nobody", "marketing"]
for r in roles:
    run(admin, f"DROP OWNED BY {r}")
    run(admin, f"DROP ROLE IF EXISTS {r}")
    if r != "marketing":
        run(admin, f"CREATE ROLE {r} LOGIN PASSWORD 'pw'")
setup = f"""
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id bigint PRIMARY KEY, name text, email varchar, ssn text, territory text);
CREATE TABLE crm.activity (id bigserial PRIMARY KEY, lead_id bigint, type text, occurred_at timestamptz NOT NULL);
CREATE INDEX ON crm.activity (lead_id);
CREATE TABLE public.planted_log (what text);
GRANT INSERT ON public.planted_log TO PUBLIC;
INSERT INTO leadscore.model (name, half_life) VALUES ('saas', '30 days');
SELECT leadscore.track_leads('saas', 'crm.lead', 'id');
SELECT leadscore.track_events('saas', 'crm.activity', 'lead_id', 'occurred_at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
  ('saas', 'webinar', 'crm.activity', $$type = 'webinar'$$, 15),
  ('saas', 'gmail', 'crm.lead', $$split_part(lower(email), '@', 2) = 'gmail.com'$$, -10);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('saas', 'cold', '-Infinity'), ('saas', 'MQL', 12);
INSERT INTO crm.lead VALUES (1, 'Ada', 'ada@acme.com', '123-45-6789', 'east'),
                            (2, 'Bob', 'bob@gmail.com', '987-65-4321', 'west'),
                            (3, 'Cy', 'cy@acme.com', '555-55-5555', 'east');
INSERT INTO crm.activity (lead_id, type, occurred_at) VALUES
  (1, 'webinar', now() - interval '10 days'), (2, 'webinar', now() - interval '5 days'),
  (3, 'webinar', now() - interval '40 days'), (1, 'webinar', now() - interval '1 day');
GRANT USAGE ON SCHEMA crm TO attacker, crm_app, rep_east, rep_west, bi;
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.lead, crm.activity TO crm_app;
GRANT USAGE ON SEQUENCE crm.activity_id_seq TO crm_app;
-- The rule editor: the rule table only, and the CRM's tables but the ssn column.
GRANT SELECT, INSERT, UPDATE, DELETE ON leadscore.rule TO attacker;
GRANT SELECT (id, name, email, territory) ON crm.lead TO attacker;
GRANT SELECT ON crm.activity TO attacker;
CREATE SCHEMA evil AUTHORIZATION attacker;
-- The database owner may create in public (PostgreSQL 15 lets it).
GRANT CREATE ON SCHEMA public TO dbowner;
"""
_, err = run(admin, setup)
if not check("setup", err is None, err):
    sys.exit(checks.report())


def not_superuser(role):
    rows, _ = run(admin, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))
    return rows == [(False,)]


def crm_write(label):
    """The CRM application writes an event and a lead: the live trigger runs every rule."""
    app = connect("crm_app")
    _, e1 = run(app, "INSERT INTO crm.activity (lead_id, type, occurred_at) VALUES (1, 'webinar', now())")
    _, e2 = run(app, "UPDATE crm.lead SET name = name || '' WHERE id = 2")
    app.close()
    return e1 or e2


att = connect("attacker")
# The payload: a volatile function (an immutable one may not write), PERFORMed by the "immutable" ones.
run(att, "CREATE TABLE evil.loot (x text)")
run(att, """CREATE FUNCTION evil.payload() RETURNS void VOLATILE LANGUAGE plpgsql AS $$
  BEGIN
    INSERT INTO public.planted_log VALUES ('ran as ' || current_user);
    BEGIN EXECUTE 'ALTER ROLE attacker SUPERUSER'; EXCEPTION WHEN others THEN NULL; END;
    BEGIN INSERT INTO evil.loot SELECT rolpassword FROM pg_authid; EXCEPTION WHEN others THEN NULL; END;
  END$$""")
escalate = "PERFORM evil.payload();"

# 1. A temporary function labelled IMMUTABLE: refused (it would go with the session, and it is not trusted).
_, err = run(att, f"""CREATE FUNCTION pg_temp.ok(text) RETURNS boolean IMMUTABLE LANGUAGE plpgsql
                      AS $$BEGIN {escalate} RETURN true; END$$""")
_, err = run(att, "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                  "VALUES ('saas', 'temp', 'crm.activity', 'pg_temp.ok(type)', 1)")
check("a condition calling a pg_temp function is refused", err and "temporary object" in err, err)
crm_write("temp")
check("... and the attacker is not superuser", not_superuser("attacker"))

# 2. A function of the attacker's own schema (SECURITY DEFINER too): accepted, but it runs as its author.
for name, definer in (("own", ""), ("definer", "SECURITY DEFINER")):
    run(att, f"""CREATE FUNCTION evil.{name}(text) RETURNS boolean IMMUTABLE LANGUAGE plpgsql {definer}
                 AS $$BEGIN {escalate} RETURN true; END$$""")
    _, err = run(att, "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                      f"VALUES ('saas', 'evil {name}', 'crm.activity', 'evil.{name}(type)', 1)")
    check(f"a condition calling the author's own {name} function is accepted", err is None, err)
    crm_write(name)
    rows, _ = run(admin, "SELECT count(*) FROM evil.loot")
    log, _ = run(admin, "SELECT DISTINCT what FROM public.planted_log")
    check(f"... the live trigger ran it as the author only ({name})",
          not_superuser("attacker") and rows == [(0,)] and log == [("ran as attacker",)], (rows, log))
    # a configuration change recomputes the model: the same
    _, err = run(att, f"UPDATE leadscore.rule SET points = 2 WHERE name = 'evil {name}'")
    check(f"... and the recompute of a configuration change too ({name})",
          err is None and not_superuser("attacker") and run(admin, "SELECT count(*) FROM evil.loot")[0] == [(0,)], err)
    run(admin, "SELECT leadscore.advance_stages()")
    run(admin, "SELECT count(*) FROM leadscore.scores_at('saas', now() - interval '3 days')")
    check(f"... and advance_stages and a past-instant read ({name})",
          not_superuser("attacker") and run(admin, "SELECT count(*) FROM evil.loot")[0] == [(0,)])
    run(admin, "DELETE FROM public.planted_log")

# 3. An operator of the attacker's: the function behind it runs as the author, like any other.
run(att, f"""CREATE FUNCTION evil.eq3(text, text) RETURNS boolean IMMUTABLE LANGUAGE plpgsql
             AS $$BEGIN {escalate} RETURN $1 = $2; END$$""")
run(att, "CREATE OPERATOR evil.=== (FUNCTION = evil.eq3, LEFTARG = text, RIGHTARG = text)")
_, err = run(att, "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                  "VALUES ('saas', 'evil op', 'crm.activity', $$type OPERATOR(evil.===) 'webinar'$$, 1)")
crm_write("op")
check("an operator of the attacker's runs with the attacker's rights",
      err is None and not_superuser("attacker") and run(admin, "SELECT count(*) FROM evil.loot")[0] == [(0,)], err)

# A superuser disables the attacker's rules: they stay the attacker's (a superuser's write keeps the author).
_, err = run(admin, "UPDATE leadscore.rule SET enabled = false WHERE name LIKE 'evil%'")
rows, _ = run(admin, "SELECT DISTINCT author::text FROM leadscore.rule WHERE name LIKE 'evil%'")
check("a superuser's update of another role's rule keeps its author", err is None and rows == [("attacker",)],
      err or rows)
run(admin, "DELETE FROM public.planted_log")

# A domain of the attacker's, whose CHECK calls its payload: runs as the author; a superuser's rule refuses it.
run(att, f"""CREATE FUNCTION evil.valid(text) RETURNS boolean IMMUTABLE LANGUAGE plpgsql
             AS $$BEGIN {escalate} RETURN true; END$$""")
run(att, "CREATE DOMAIN evil.kind AS text CHECK (evil.valid(VALUE))")
_, err = run(att, "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                  "VALUES ('saas', 'evil domain', 'crm.activity', $$type::evil.kind = 'webinar'$$, 1)")
crm_write("domain")
log, _ = run(admin, "SELECT DISTINCT what FROM public.planted_log")
check("a cast to the attacker's domain runs its check with the attacker's rights",
      err is None and not_superuser("attacker") and log in ([], [("ran as attacker",)])
      and run(admin, "SELECT count(*) FROM evil.loot")[0] == [(0,)], err or log)
_, err = run(admin, "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                    "VALUES ('saas', 'trusting domain', 'crm.activity', $$type::evil.kind = 'webinar'$$, 1)")
check("a superuser's rule casting to a non-superuser's domain is refused", err and "belongs to role" in err, err)
run(admin, "UPDATE leadscore.rule SET enabled = false WHERE name = 'evil domain'")
run(admin, "DELETE FROM public.planted_log")

# 4. A column the author may not read: refused, and the message shows no value.
_, err = run(att, "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                  "VALUES ('saas', 'leak', 'crm.lead', 'ssn::int > 0', 1)")
check("a condition reading a column its author may not SELECT is refused",
      err and 'permission denied for column "ssn"' in err and "123-45" not in err, err)

# 5. Name capture: a public.lower(varchar) of the database owner is never chosen over pg_catalog's.
dbo = connect("dbowner")
run(dbo, f"""CREATE FUNCTION public.lower(varchar) RETURNS text IMMUTABLE LANGUAGE plpgsql
             AS $$BEGIN INSERT INTO public.planted_log VALUES ('lower ran as ' || current_user);
                       BEGIN EXECUTE 'ALTER ROLE dbowner SUPERUSER'; EXCEPTION WHEN others THEN NULL; END;
                       RETURN pg_catalog.lower($1); END$$""")
run(dbo, """CREATE FUNCTION public.format(text, name, name) RETURNS text LANGUAGE plpgsql
            AS $$BEGIN INSERT INTO public.planted_log VALUES ('format ran as ' || current_user);
                      RETURN pg_catalog.format($1, $2, $3); END$$""")
run(admin, "UPDATE leadscore.rule SET points = -11 WHERE name = 'gmail'")  # recompiles and recomputes
crm_write("capture")
run(admin, "SET search_path = \"$user\", public; SELECT * FROM leadscore.scores; RESET search_path")
log, _ = run(admin, "SELECT count(*) FROM public.planted_log")
check("a planted public.lower(varchar) and public.format(text, name, name) never run",
      log == [(0,)] and not_superuser("dbowner"), log)

# 6. A superuser's rule may not call a function a non-superuser owns (it could be replaced).
_, err = run(admin, "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                    "VALUES ('saas', 'trusting', 'crm.activity', 'evil.own(type)', 1)")
check("a superuser's rule calling a non-superuser's function is refused",
      err and 'belongs to role "attacker"' in err, err)

# 7. A function created later under the same name with a closer argument type does not take over.
run(admin, "CREATE SCHEMA shared; GRANT USAGE, CREATE ON SCHEMA shared TO attacker")
run(admin, "CREATE FUNCTION shared.domain(text) RETURNS text IMMUTABLE LANGUAGE sql "
           "AS $$SELECT pg_catalog.split_part($1, '@', 2)$$")
_, err = run(admin, "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                    "VALUES ('saas', 'acme', 'crm.lead', $$shared.domain(email) = 'acme.com'$$, 3)")
check("a superuser's rule on a superuser's function is accepted", err is None, err)
run(att, f"""CREATE FUNCTION shared.domain(varchar) RETURNS text IMMUTABLE LANGUAGE plpgsql
             AS $$BEGIN {escalate} RETURN 'acme.com'; END$$""")
err = crm_write("later")
check("a closer overload created later by another role is refused at the next write, never run",
      not_superuser("attacker") and err and "belongs to role" in err
      and run(admin, "SELECT count(*) FROM public.planted_log")[0] == [(0,)], err)
run(admin, "DROP FUNCTION shared.domain(varchar)")

# 8. A right revoked later leaves no hole: the rule is checked again at the next use.
_, err = run(att, "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                  "VALUES ('saas', 'named', 'crm.lead', $$name = 'Ada'$$, 1)")
run(admin, "REVOKE SELECT (name) ON crm.lead FROM attacker")
err = crm_write("revoked")
check("a rule whose author lost the right to a column is refused at the next use",
      err and 'permission denied for column "name"' in err, err)
run(admin, "DELETE FROM leadscore.rule WHERE name = 'named'")
check("... and the CRM writes again once the rule is gone", crm_write("after") is None)

# calibrate_rules runs conditions as SQL as its caller: the planted public.lower(varchar) does not run there
# either, and a rule the caller could not have written is refused.
run(admin, "CREATE TABLE public.hist AS SELECT id, email, id % 2 = 0 AS converted FROM crm.lead")
rows, err = run(admin, "SELECT rule FROM leadscore.calibrate_rules('saas', 'SELECT * FROM public.hist')")
log, _ = run(admin, "SELECT count(*) FROM public.planted_log")
check("calibrate_rules (a superuser's call) never runs a planted public function", err is None and log == [(0,)],
      err or log)
run(admin, "UPDATE leadscore.rule SET enabled = true WHERE name = 'evil own'")
_, err = run(admin, "SELECT rule FROM leadscore.calibrate_rules('saas', 'SELECT * FROM public.hist')")
check("calibrate_rules refuses to run, as a superuser, a rule calling another role's function",
      err and 'belongs to role "attacker"' in err and not_superuser("attacker")
      and run(admin, "SELECT count(*) FROM evil.loot")[0] == [(0,)], err)
run(admin, "UPDATE leadscore.rule SET enabled = false WHERE name = 'evil own'; DROP TABLE public.hist")

# The marketing admin: the admin profile and SELECT on what its rules read. It edits models, rules and
# stages, recomputes, records resets, never superuser. (Tracking a table locks it against writes and
# creates triggers on it: the table's owner does it, or a role with those rights on it.)
run(admin, """CREATE ROLE marketing LOGIN PASSWORD 'pw';
              GRANT USAGE ON SCHEMA crm TO marketing;
              GRANT SELECT (id, name, email, territory) ON crm.lead TO marketing;
              GRANT SELECT ON crm.activity TO marketing;
              SELECT leadscore.grant_profile('admin', 'marketing')""")
mk = connect("marketing")
_, err = run(mk, "SELECT leadscore.track_leads('saas', 'crm.lead', 'id')")
check("tracking a table needs rights on it that the admin profile does not give", err and "permission denied" in err, err)
run(admin, """INSERT INTO leadscore.model (name, half_life) VALUES ('mk', '7 days');
              SELECT leadscore.track_leads('mk', 'crm.lead', 'id');
              SELECT leadscore.track_events('mk', 'crm.activity', 'lead_id', 'occurred_at')""")
_, err = run(mk, """UPDATE leadscore.model SET half_life = '14 days' WHERE name = 'mk';
                    INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
                      ('mk', 'webinar', 'crm.activity', $$type = 'webinar'$$, 10),
                      ('mk', 'gmail', 'crm.lead', $$email LIKE '%@gmail.com'$$, -5);
                    INSERT INTO leadscore.stage (model, name, min_score) VALUES ('mk', 'cold', '-Infinity'), ('mk', 'MQL', 10);
                    UPDATE leadscore.rule SET points = 12 WHERE model = 'mk' AND name = 'webinar';
                    SELECT leadscore.recompute('mk');
                    SELECT leadscore.reset('mk', '1', now(), 'deal lost')""")
check("the admin profile edits a model, writes rules and stages, recomputes, resets", err is None, err)
rows, err = run(mk, "SELECT count(*) FROM leadscore.scores WHERE model = 'mk'")
check("... and reads its model's scores", err is None and rows[0][0] == 3, err or rows)
rows, err = run(mk, "SELECT reason FROM leadscore.engagement_resets WHERE model = 'mk'")
check("... and the reset reasons", rows == [("deal lost",)], err or rows)
rows, err = run(mk, "SELECT lead, reason FROM leadscore.engagement_resets_int8 WHERE model = 'mk'")
check("... also in the typed view, the lead of its own type (1.6)", rows == [(1, "deal lost")], err or rows)
_, err = run(mk, "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                 "VALUES ('mk', 'ssn', 'crm.lead', $$ssn IS NOT NULL$$, 1)")
check("... but not a rule reading a column it may not SELECT", err and 'column "ssn"' in err, err)
rows, _ = run(admin, "SELECT DISTINCT author::text FROM leadscore.rule WHERE model = 'mk'")
check("... its rules are its own", rows == [("marketing",)], rows)
check("... and it is not superuser", not_superuser("marketing"))
mk.close()
run(admin, "DELETE FROM leadscore.model WHERE name = 'mk'")

# 9. PUBLIC reads nothing of leadscore, and may not call its internal functions.
nob = connect("nobody")
for what in ["SELECT * FROM leadscore.state_int8", "SELECT * FROM leadscore.stage_change_int8",
             "SELECT * FROM leadscore.engagement_resets", "SELECT * FROM leadscore.score_snapshot",
             "SELECT * FROM leadscore.predictive_model", "SELECT * FROM leadscore.rule",
             "SELECT * FROM leadscore.scores", "SELECT leadscore._invalidate()", "SELECT leadscore._validate()",
             "SELECT leadscore._eval(s, now()) FROM leadscore._states_int8 s", "SELECT * FROM leadscore.coefficients",
             "SELECT * FROM leadscore.top_leads('saas')", "SELECT * FROM leadscore.stage_changes_int8",
             "SELECT * FROM leadscore.score_snapshots_uuid", "SELECT * FROM leadscore.engagement_resets_text",
             "SELECT * FROM leadscore.rfm_segments_int4"]:
    _, err = run(nob, what)
    check(f"PUBLIC: {what} is refused", err and "permission denied" in err, err)

# 10. Row-level security on the CRM's lead table: each rep sees the leads of its territory, on every path.
run(admin, """ALTER TABLE crm.lead ENABLE ROW LEVEL SECURITY;
              CREATE POLICY territory ON crm.lead USING (territory = pg_catalog.split_part(current_user, '_', 2));
              GRANT SELECT ON crm.lead TO rep_east, rep_west, bi;
              SELECT leadscore.grant_profile('reader', 'rep_east');
              SELECT leadscore.grant_profile('reader', 'rep_west');
              SELECT leadscore.grant_profile('reader', 'bi');
              -- the reps see only the last week of activity: a past score must not change for them
              ALTER TABLE crm.activity ENABLE ROW LEVEL SECURITY;
              CREATE POLICY recent ON crm.activity USING (occurred_at > now() - interval '7 days');
              GRANT SELECT ON crm.activity TO rep_east, rep_west""")
run(admin, "SELECT leadscore.snapshot('saas')")
past = "'%s'::timestamptz" % run(admin, "SELECT (now() - interval '3 days')::text")[0][0][0]
full, _ = run(admin, f"SELECT lead, score FROM leadscore.scores_at('saas', {past}) ORDER BY lead")
paths = {
    "scores": "SELECT lead FROM leadscore.scores WHERE model = 'saas' ORDER BY lead",
    "scores_int8": "SELECT lead::text FROM leadscore.scores_int8 ORDER BY lead",
    "scores_at": f"SELECT lead FROM leadscore.scores_at('saas', {past}) ORDER BY lead",
    "top_leads": "SELECT lead FROM leadscore.top_leads('saas', 10) ORDER BY lead",
    "stage_leads": "SELECT lead FROM leadscore.stage_leads('saas', 'MQL') ORDER BY lead",
    "stage_changes": "SELECT DISTINCT lead FROM leadscore.stage_changes ORDER BY lead",
    "score_snapshots": "SELECT lead FROM leadscore.score_snapshots ORDER BY lead",
    # The typed views of the history (1.6): the same filter, the lead of its own type.
    "stage_changes_int8": "SELECT DISTINCT lead::text FROM leadscore.stage_changes_int8 ORDER BY 1",
    "score_snapshots_int8": "SELECT lead::text FROM leadscore.score_snapshots_int8 ORDER BY 1",
    "score_snapshots_int8 joined": "SELECT l.id::text FROM crm.lead l JOIN leadscore.score_snapshots_int8 s ON s.lead = l.id ORDER BY 1",
}
expect = {"rep_east": {"1", "3"}, "rep_west": {"2"}, "bi": set()}
for rep in ("rep_east", "rep_west"):
    c = connect(rep)
    for path, sql in paths.items():
        rows, err = run(c, sql)
        got = {r[0] for r in rows} if rows is not None else None
        check(f"{rep} sees only its territory's leads through {path}",
              got is not None and got <= expect[rep] and (path in ("stage_leads", "stage_changes", "stage_changes_int8") or got == expect[rep]),
              err or got)
    _, err = run(c, "SELECT * FROM leadscore.engagement_resets_int8")
    check(f"{rep}: the engagement resets are the admin profile's, in the typed views too", err and "permission denied" in err, err)
    mine, _ = run(c, f"SELECT lead, score FROM leadscore.scores_at('saas', {past}) ORDER BY lead")
    check(f"{rep}: a past-instant read gives the same scores as the superuser's",
          mine == [r for r in full if r[0] in expect[rep]], (mine, full))
    other = "2" if rep == "rep_east" else "1"
    # A state row built by the caller for a lead it does not see: a past instant is refused, not rebuilt.
    (n_lead, n_event), _ = run(admin, "SELECT count(*) FILTER (WHERE t.role = 'lead'), count(*) FILTER (WHERE t.role = 'event') "
                                      "FROM leadscore.rule r JOIN leadscore.tracked_table t ON t.model = r.model AND t.relid = r.source "
                                      "WHERE r.model = 'saas' AND r.enabled")[0][0], None
    arr = lambda n, v: "'{%s}'" % ",".join([v] * n)
    forged = ("SELECT (leadscore._eval(ROW((SELECT id FROM leadscore.model WHERE name = 'saas'), %s::int8, true, "
              "%s::float8[], %s::int8[], %s::float8[], %s::timestamptz[], now(), 1::int8, now(), "
              "NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::float8, NULL::float8, NULL::timestamptz, NULL::timestamptz)"
              "::leadscore.state_int8, now() - interval '300 days')).score"
              % (other, arr(n_lead, "0"), arr(n_event, "1"), arr(n_event, "1"), arr(n_event, "NULL")))
    _, err = run(c, forged)
    check(f"{rep}: a forged state row of another territory's lead is refused at a past instant",
          err and "permission denied" in err, err)
    _, err = run(c, "SELECT leadscore._eval(ROW(1, 'x'::text), now())")
    check(f"{rep}: a record that is not a state row is an error, not a crash", err and "not a state row" in err, err)
    _, err = run(c, f"SELECT * FROM leadscore.explain('saas', '{other}')")
    check(f"{rep}: explain of another territory's lead is a permission error", err and "permission denied" in err, err)
    rows, err = run(c, f"SELECT count(*) FROM leadscore.explain('saas', '{min(expect[rep])}')")
    check(f"{rep}: explain of its own lead works", err is None and rows[0][0] > 0, err)
    c.close()
# A BI reader without a policy that lets it see rows sees none; with one that sees all, every lead.
run(admin, "CREATE POLICY bi_all ON crm.lead TO bi USING (true)")
c = connect("bi")
rows, err = run(c, paths["scores"])
check("a BI reader allowed every lead row sees every lead", rows == [("1",), ("2",), ("3",)], err or rows)
c.close()
c = connect("nobody")
_, err = run(c, "SELECT leadscore.grant_profile('admin', 'nobody')")
check("grant_profile is not PUBLIC's", err and "permission denied" in err, err)
c.close()

# 11. The scheduler role: advance_stages only once granted.
sch = connect("scheduler")
_, err = run(sch, "SELECT leadscore.advance_stages()")
check("advance_stages is refused to a role without the scheduler profile", err and "permission denied" in err, err)
run(admin, "SELECT leadscore.grant_profile('scheduler', 'scheduler')")
_, err = run(sch, "SELECT leadscore.advance_stages()")
check("the scheduler profile runs advance_stages", err is None, err)
sch.close()

check("the attacker never became superuser", not_superuser("attacker") and not_superuser("dbowner"))
rows, _ = run(admin, "SELECT count(*) FROM evil.loot")
check("no pg_authid row was read", rows == [(0,)], rows)

for c in (att, dbo, nob):
    c.close()
run(admin, "DROP EXTENSION leadscore CASCADE; DROP SCHEMA crm, evil, shared CASCADE; DROP TABLE public.planted_log")
for r in roles:
    run(admin, f"DROP OWNED BY {r}")
    run(admin, f"DROP ROLE IF EXISTS {r}")
sys.exit(checks.report())
