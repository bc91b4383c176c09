#!/usr/bin/env bash
# Upgrade path test: for every older version with an install script, CREATE EXTENSION at that version then
# ALTER EXTENSION UPDATE must give the same objects (and the same definitions) as a fresh install of the
# default version. Run under scripts/with_pg.sh. Ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/../.."

default=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" leadscore.control)
# Every version one can create: those with an install script and those an update script starts from.
versions=$(ls sql/leadscore--*.sql | sed -n 's|sql/leadscore--\([0-9.]*\)\(--[0-9.]*\)\{0,1\}\.sql$|\1|p' | sort -uV)
passed=0
failed=0

# The fingerprint of an install (test/upgrade/fingerprint.sql): every member object of the extension and
# every part of a member table (columns with their defaults and privileges, constraints, indexes, triggers,
# policies), each with its definition, owner, privileges and comment; the extension's configuration tables
# with their conditions, its schema's privileges, and whatever the schema holds that is not a member.
fingerprint() {
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -f test/upgrade/fingerprint.sql
}

dropdb --if-exists ls_fresh 2>/dev/null
createdb ls_fresh
psql -X -q -d ls_fresh -c "CREATE EXTENSION leadscore"
fresh=$(fingerprint ls_fresh)
for v in $versions; do
	[ "$v" = "$default" ] && continue
	db="ls_from_${v//./_}"
	dropdb --if-exists "$db" 2>/dev/null
	createdb "$db"
	psql -X -q -d "$db" -c "CREATE EXTENSION leadscore VERSION '$v'" -c "ALTER EXTENSION leadscore UPDATE"
	if [ "$(fingerprint "$db")" = "$fresh" ]; then
		echo "ok - $v updated to $default equals a fresh install"
		passed=$((passed + 1))
	else
		echo "not ok - $v updated to $default differs from a fresh install:"
		diff <(echo "$fresh") <(fingerprint "$db") | head -40 || true
		failed=$((failed + 1))
	fi
done
# A fresh install works at all, and no older version exists yet: say so rather than pass silently.
if [ -n "$fresh" ]; then
	echo "ok - fresh install of $default has $(echo "$fresh" | wc -l) member objects"
	passed=$((passed + 1))
else
	echo "not ok - fresh install of $default has no member objects"
	failed=$((failed + 1))
fi

# Data across the updates: a CRM scored by each older version (states, stage history, a due stage change),
# updated to the default version, keeps scoring: its scores equal a recompute, new events score, and the
# features of the new version work on the old rows.
check() { # name, SQL returning t, in database $db
	if [ "$(psql -X -q -At -d "$db" -c "$2")" = t ]; then
		echo "ok - $1"; passed=$((passed + 1))
	else
		echo "not ok - $1"; failed=$((failed + 1))
	fi
}
for prev in $versions; do
	[ "$prev" = "$default" ] && continue
	db="ls_data_${prev//./_}"
	dropdb --if-exists "$db" 2>/dev/null
	createdb "$db"
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<SQL
CREATE EXTENSION leadscore VERSION '$prev';
CREATE TABLE lead (id int PRIMARY KEY, industry text);
CREATE TABLE visit (lead int, kind text, at timestamptz NOT NULL);
INSERT INTO leadscore.model (name, half_life) VALUES ('m', '10 days');
SELECT leadscore.track_leads('m', 'lead', 'id'), leadscore.track_events('m', 'visit', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('m', 'tech', 'lead', \$\$industry = 'Technology'\$\$, 10), ('m', 'demo', 'visit', \$\$kind = 'demo'\$\$, 40);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('m', 'cold', '-Infinity'), ('m', 'MQL', 30);
INSERT INTO lead SELECT g, CASE WHEN g % 2 = 0 THEN 'Technology' END FROM generate_series(1, 50) g;
INSERT INTO visit SELECT g % 50 + 1, 'demo', now() - g * interval '7 hours' FROM generate_series(1, 200) g;
-- A partitioned event table, rows written straight into a partition: not scored before 1.5 (the update
-- recomputes the model).
CREATE TABLE web (lead int, page text, at timestamptz NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE web_old PARTITION OF web FOR VALUES FROM (MINVALUE) TO ('2000-01-01');
CREATE TABLE web_new PARTITION OF web FOR VALUES FROM ('2000-01-01') TO (MAXVALUE);
SELECT leadscore.track_events('m', 'web', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'pricing', 'web', \$\$page = 'pricing'\$\$, 5);
INSERT INTO web SELECT g % 50 + 1, 'pricing', now() - g * interval '5 hours' FROM generate_series(1, 40) g;
INSERT INTO web_new SELECT g % 50 + 1, 'pricing', now() - g * interval '3 hours' FROM generate_series(1, 40) g;
SQL
	# Roles given a profile before the update (1.4 and later have profiles) keep what they may do, and may
	# read the typed views of the views they read (1.6).
	profiles=no
	if [ "$(printf '%s\n' 1.4 "$prev" | sort -V | head -1)" = 1.4 ]; then
		profiles=yes
		psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<SQL
DO \$\$ BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ls_up_reader') THEN CREATE ROLE ls_up_reader; END IF;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ls_up_analyst') THEN CREATE ROLE ls_up_analyst; END IF;
END \$\$;
SELECT leadscore.grant_profile('reader', 'ls_up_reader'), leadscore.grant_profile('analyst', 'ls_up_analyst');
SQL
	fi
	# The library serves the older schema: a bad rule is refused before the update (by the trigger, which
	# has the row checks there) and after it (by leadscore.rule's constraints, 1.6).
	for when in before after; do
		[ "$when" = after ] && psql -X -q -d "$db" -c "ALTER EXTENSION leadscore UPDATE"
		for bad in "points = 'Infinity'" "points = 'NaN'" "cap = 'Infinity'" "cap = 0"; do
			out=$(psql -X -q -d "$db" -c "UPDATE leadscore.rule SET $bad WHERE name = 'demo'" 2>&1 || true)
			if grep -qE 'points must be finite|cap must be positive and finite' <<<"$out"; then
				echo "ok - $prev, $when the update: a rule with $bad is refused"; passed=$((passed + 1))
			else
				echo "not ok - $prev, $when the update: a rule with $bad: $out"; failed=$((failed + 1))
			fi
		done
	done
	check "$prev updated to $default: version" "SELECT extversion = '$default' FROM pg_extension WHERE extname = 'leadscore'"
	at=$(psql -X -q -At -d "$db" -c "SELECT now() + interval '1 day'")
	psql -X -q -d "$db" -c "INSERT INTO visit SELECT g, 'demo', now() FROM generate_series(1, 10) g" \
		-c "INSERT INTO web_new SELECT g, 'pricing', now() FROM generate_series(5, 15) g" \
		-c "CREATE TABLE before AS SELECT lead, score, stage FROM leadscore.scores_at('m', '$at')" \
		-c "SELECT leadscore.recompute('m')" >/dev/null
	check "$prev: scores kept across the update equal a recompute" \
		"SELECT count(*) = 50 AND bool_and(abs(b.score - s.score) < 1e-9 AND b.stage IS NOT DISTINCT FROM s.stage)
		   FROM before b JOIN leadscore.scores_at('m', '$at') s USING (lead)"
	psql -X -q -d "$db" -c "UPDATE leadscore.model SET hot_index = true WHERE name = 'm'" >/dev/null
	check "$prev: top_leads on the updated model equals the full sort" \
		"SELECT (SELECT array_agg(round(score::numeric, 9) ORDER BY score DESC) FROM leadscore.top_leads('m', 10, now() + interval '3 days'))
		      = (SELECT array_agg(round(score::numeric, 9) ORDER BY score DESC) FROM
		          (SELECT score FROM leadscore.scores_at('m', now() + interval '3 days') ORDER BY score DESC LIMIT 10) x)"
	check "$prev: advance_stages runs on the updated states" "SELECT leadscore.advance_stages(now() + interval '30 days') >= 0"
	check "$prev: each lead's stage history in order" \
		"SELECT count(*) = 0 FROM (SELECT changed_at, lag(changed_at) OVER (PARTITION BY lead ORDER BY id) AS before
		   FROM leadscore.stage_changes WHERE model = 'm') x WHERE changed_at < before"
	# 1.4's privilege model: nothing is PUBLIC's any more, and the rules written before keep running as the
	# extension's owner did.
	check "$prev: after the update PUBLIC reads and runs nothing of leadscore" \
		"SELECT NOT has_table_privilege('public', 'leadscore.scores', 'SELECT')
		    AND NOT has_table_privilege('public', 'leadscore.state_int4', 'SELECT')
		    AND NOT has_table_privilege('public', 'leadscore.rule', 'SELECT')
		    AND NOT has_function_privilege('public', 'leadscore._invalidate()', 'EXECUTE')
		    AND NOT has_function_privilege('public', 'leadscore.scores_at(text, timestamptz)', 'EXECUTE')"
	# 1.6: the typed history views show the same rows as the views over every key type, joinable to the
	# lead table on its own type; the stage's rank is there.
	check "$prev: stage_changes_int4 has the rows of stage_changes, and joins the lead table without a cast" \
		"SELECT (SELECT count(*) FROM leadscore.stage_changes_int4 c JOIN lead l ON l.id = c.lead WHERE c.model = 'm')
		      = (SELECT count(*) FROM leadscore.stage_changes WHERE model = 'm')
		    AND (SELECT count(*) FROM leadscore.stage_changes WHERE model = 'm') > 0
		    AND (SELECT bool_and(to_rank = CASE to_stage WHEN 'cold' THEN 1 WHEN 'MQL' THEN 2 END)
		           FROM leadscore.stage_changes_int4 WHERE to_stage IS NOT NULL)"
	check "$prev: after the update PUBLIC reads none of the typed views" \
		"SELECT bool_and(NOT has_table_privilege('public', c.oid, 'SELECT')) AND count(*) = 16
		   FROM pg_class c WHERE c.relnamespace = 'leadscore'::regnamespace
		    AND c.relname ~ '^(stage_changes|engagement_resets|rfm_segments|score_snapshots)_(int4|int8|uuid|text)\$'"
	if [ "$profiles" = yes ]; then
		check "$prev: a reader granted before the update reads the typed views; an analyst still runs conversion_by_stage" \
			"SELECT has_table_privilege('ls_up_reader', 'leadscore.stage_changes_int8', 'SELECT')
			    AND has_table_privilege('ls_up_reader', 'leadscore.score_snapshots_uuid', 'SELECT')
			    AND NOT has_table_privilege('ls_up_reader', 'leadscore.engagement_resets_int8', 'SELECT')
			    AND has_function_privilege('ls_up_analyst', 'leadscore.conversion_by_stage(text, text, timestamptz)', 'EXECUTE')
			    AND NOT has_function_privilege('ls_up_reader', 'leadscore.conversion_by_stage(text, text, timestamptz)', 'EXECUTE')"
	fi
	check "$prev: rules written before the update have the extension's owner as author" \
		"SELECT bool_and(author::oid = (SELECT relowner FROM pg_class WHERE oid = 'leadscore.rule'::regclass))
		   FROM leadscore.rule"
done

# An older install whose rule calls a function of public without its schema (older versions looked in
# public): the update to 1.4 fails, naming the rule, and leaves the install as it was.
prev=1.3
if [ -f "sql/leadscore--1.3--1.4.sql" ]; then
	db=ls_unqualified
	dropdb --if-exists "$db" 2>/dev/null
	createdb "$db"
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<SQL
CREATE EXTENSION leadscore VERSION '$prev';
CREATE FUNCTION public.is_big(n int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT n >= 200';
CREATE TABLE lead (id int PRIMARY KEY, size int);
INSERT INTO leadscore.model (name) VALUES ('m');
SELECT leadscore.track_leads('m', 'lead', 'id');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'big', 'lead', 'is_big(size)', 5);
SQL
	out=$(psql -X -q -d "$db" -c "ALTER EXTENSION leadscore UPDATE" 2>&1 || true)
	if grep -q 'rule "big" of model "m": function is_big(integer) does not exist' <<<"$out"; then
		echo "ok - $prev with an unqualified public function: the update fails naming the rule"; passed=$((passed + 1))
	else
		echo "not ok - $prev with an unqualified public function: the update said: $out"; failed=$((failed + 1))
	fi
	check "$prev: ... and the install is left at $prev" "SELECT extversion = '$prev' FROM pg_extension WHERE extname = 'leadscore'"
	psql -X -q -d "$db" -c "UPDATE leadscore.rule SET condition = 'public.is_big(size)'" -c "ALTER EXTENSION leadscore UPDATE" >/dev/null
	check "$prev: qualified, the update goes through" "SELECT extversion = '$default' FROM pg_extension WHERE extname = 'leadscore'"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
