-- The fingerprint of the leadscore install in the current database: one line per member object of the
-- extension and per part of a member relation (column, constraint, index, trigger, policy, rule,
-- statistics), each with everything an install defines about it (definition, owner, privileges, comment,
-- options), and lines for the extension itself (its configuration tables and their conditions), its
-- schema and the objects of the schema that are not members. Sorted, so that two installs made by the
-- same role are the same exactly when their fingerprints are. Used by check_upgrade.sh:
--   psql -X -q -At -d DB -f test/upgrade/fingerprint.sql
WITH ext AS (
	SELECT e.oid, e.extnamespace FROM pg_extension e WHERE e.extname = 'leadscore'),
member AS (
	SELECT d.classid, d.objid, d.objsubid
	  FROM pg_depend d JOIN ext ON d.refobjid = ext.oid
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'),
-- The member relations, and the relation of each member composite type (its attributes).
rel AS (
	SELECT m.objid AS oid FROM member m WHERE m.classid = 'pg_class'::regclass
	UNION
	SELECT t.typrelid FROM member m JOIN pg_type t ON t.oid = m.objid
	 WHERE m.classid = 'pg_type'::regclass AND t.typrelid <> 0),
lines AS (
	-- Every member object: what it is, its comment, and its definition by kind.
	SELECT 'member ' || pg_describe_object(m.classid, m.objid, m.objsubid)
	       || ' | comment ' || coalesce(quote_literal(dsc.description), '-') || ' | '
	       || coalesce(CASE m.classid
	          WHEN 'pg_proc'::regclass THEN (
	              SELECT 'owner ' || p.proowner::regrole || ' acl ' || coalesce(p.proacl::text, '(default)') || ' | '
	                     -- pg_get_functiondef refuses aggregates: their support functions and flags stand for them.
	                     || CASE WHEN p.prokind = 'a'
	                        THEN (SELECT concat_ws(' ', 'aggregate', a.aggkind, a.aggtransfn, a.aggfinalfn, a.aggcombinefn,
	                                               a.aggserialfn, a.aggdeserialfn, a.aggmtransfn, a.aggminvtransfn,
	                                               a.aggmfinalfn, a.aggfinalextra, a.aggfinalmodify, a.aggsortop,
	                                               a.aggtranstype::regtype, a.aggtransspace, a.agginitval,
	                                               p.proparallel, pg_get_function_arguments(p.oid))
	                                FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
	                        ELSE pg_get_functiondef(p.oid) END
	                FROM pg_proc p WHERE p.oid = m.objid)
	          WHEN 'pg_class'::regclass THEN (
	              SELECT format('kind %s persistence %s owner %s am %s options %s row security %s forced %s '
	                            'replica identity %s partition key %s inherits %s acl %s',
	                            c.relkind, c.relpersistence, c.relowner::regrole,
	                            coalesce((SELECT am.amname FROM pg_am am WHERE am.oid = c.relam)::text, '-'),
	                            coalesce(c.reloptions::text, '-'), c.relrowsecurity, c.relforcerowsecurity,
	                            c.relreplident, coalesce(pg_get_partkeydef(c.oid), '-'),
	                            coalesce((SELECT string_agg(i.inhparent::regclass::text, ', ' ORDER BY i.inhseqno)
	                                        FROM pg_inherits i WHERE i.inhrelid = c.oid), '-'),
	                            coalesce(c.relacl::text, '(default)'))
	                     || CASE WHEN c.relkind IN ('v', 'm') THEN ' | view ' || pg_get_viewdef(c.oid) ELSE '' END
	                     || CASE WHEN c.relkind = 'S' THEN (
	                            SELECT format(' | sequence %s start %s increment %s min %s max %s cache %s cycle %s owned by %s',
	                                          s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
	                                          s.seqcache, s.seqcycle,
	                                          coalesce((SELECT d.refobjid::regclass || '.' || quote_ident(a.attname)
	                                                           || ' (' || d.deptype::text || ')'
	                                                      FROM pg_depend d
	                                                      JOIN pg_attribute a ON a.attrelid = d.refobjid
	                                                                         AND a.attnum = d.refobjsubid
	                                                     WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
	                                                       AND d.refclassid = 'pg_class'::regclass
	                                                       AND d.deptype IN ('a', 'i')), '-'))
	                              FROM pg_sequence s WHERE s.seqrelid = c.oid) ELSE '' END
	                FROM pg_class c WHERE c.oid = m.objid)
	          WHEN 'pg_type'::regclass THEN (
	              SELECT format('type %s owner %s acl %s', t.typtype, t.typowner::regrole, coalesce(t.typacl::text, '(default)'))
	                FROM pg_type t WHERE t.oid = m.objid)
	          WHEN 'pg_event_trigger'::regclass THEN (
	              SELECT format('on %s tags %s enabled %s runs %s owner %s', e.evtevent, coalesce(e.evttags::text, '-'),
	                            e.evtenabled, e.evtfoid::regprocedure, e.evtowner::regrole)
	                FROM pg_event_trigger e WHERE e.oid = m.objid)
	          END, '')
	  FROM member m
	  LEFT JOIN pg_description dsc ON dsc.classoid = m.classid AND dsc.objoid = m.objid AND dsc.objsubid = m.objsubid
	UNION ALL
	-- Every column of a member table, view or composite type, in order. Column options: those set with
	-- ALTER COLUMN ... SET; some PostgreSQL builds add a pg_attver of their own, different in every install.
	SELECT format('column %s #%s %s | %s collation %s | not null %s | identity %s | generated %s | default %s | '
	              'acl %s | options %s | storage %s | compression %s | statistics %s | comment %s',
	              a.attrelid::regclass, lpad((row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum))::text, 3, '0'), quote_ident(a.attname),
	              format_type(a.atttypid, a.atttypmod), coalesce(a.attcollation::regcollation::text, '-'), a.attnotnull,
	              nullif(a.attidentity, ''), nullif(a.attgenerated, ''), coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-'),
	              coalesce(a.attacl::text, '(default)'), coalesce(array_to_string(ARRAY(SELECT o FROM unnest(a.attoptions) o
	                                                    WHERE o NOT LIKE 'pg\_attver=%'), ','), '-'), a.attstorage,
	              nullif(a.attcompression, ''), a.attstattarget,
	              coalesce(quote_literal(col_description(a.attrelid, a.attnum)), '-'))
	  FROM rel JOIN pg_class c ON c.oid = rel.oid
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
	UNION ALL
	-- Constraints (check, not null of domains, primary key, unique, foreign key, exclusion, trigger), named.
	SELECT format('constraint %s on %s | %s | comment %s', quote_ident(k.conname),
	              coalesce(nullif(k.conrelid, 0)::regclass::text, k.contypid::regtype::text), pg_get_constraintdef(k.oid),
	              coalesce(quote_literal(obj_description(k.oid, 'pg_constraint')), '-'))
	  FROM pg_constraint k
	 WHERE k.conrelid IN (SELECT oid FROM rel)
	    OR k.contypid IN (SELECT objid FROM member WHERE classid = 'pg_type'::regclass)
	UNION ALL
	-- Indexes of the member tables, with their name, columns, predicate and storage options.
	SELECT format('index %s | %s | clustered %s | replica identity %s | comment %s', x.indexrelid::regclass,
	              pg_get_indexdef(x.indexrelid), x.indisclustered, x.indisreplident,
	              coalesce(quote_literal(obj_description(x.indexrelid, 'pg_class')), '-'))
	  FROM pg_index x WHERE x.indrelid IN (SELECT oid FROM rel)
	UNION ALL
	-- Triggers on the member tables; the internal ones (foreign keys) by their constraint, not their name.
	SELECT CASE WHEN g.tgisinternal
	            THEN format('internal trigger on %s of %s | %s %s %s', g.tgrelid::regclass,
	                        (SELECT quote_ident(k.conname) FROM pg_constraint k WHERE k.oid = g.tgconstraint),
	                        g.tgfoid::regprocedure, g.tgtype, g.tgenabled)
	            ELSE format('trigger %s on %s | %s | enabled %s | comment %s', quote_ident(g.tgname), g.tgrelid::regclass,
	                        pg_get_triggerdef(g.oid), g.tgenabled,
	                        coalesce(quote_literal(obj_description(g.oid, 'pg_trigger')), '-')) END
	  FROM pg_trigger g WHERE g.tgrelid IN (SELECT oid FROM rel)
	UNION ALL
	-- Row-level security policies.
	SELECT format('policy %s on %s | %s %s | roles %s | using %s | with check %s | comment %s', quote_ident(p.polname),
	              p.polrelid::regclass, p.polcmd, CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
	              p.polroles::regrole[], coalesce(pg_get_expr(p.polqual, p.polrelid), '-'),
	              coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-'),
	              coalesce(quote_literal(obj_description(p.oid, 'pg_policy')), '-'))
	  FROM pg_policy p WHERE p.polrelid IN (SELECT oid FROM rel)
	UNION ALL
	-- Rewrite rules other than a view's own.
	SELECT format('rule %s on %s | %s | enabled %s', quote_ident(r.rulename), r.ev_class::regclass, pg_get_ruledef(r.oid),
	              r.ev_enabled)
	  FROM pg_rewrite r WHERE r.ev_class IN (SELECT oid FROM rel) AND r.rulename <> '_RETURN'
	UNION ALL
	SELECT format('statistics %s | %s', s.stxname, pg_get_statisticsobjdef(s.oid))
	  FROM pg_statistic_ext s WHERE s.stxrelid IN (SELECT oid FROM rel)
	UNION ALL
	-- The extension: what pg_dump dumps of it (the configuration tables and the condition of each).
	SELECT format('extension %s | version %s | schema %s | relocatable %s | owner %s | comment %s', e.extname,
	              e.extversion, e.extnamespace::regnamespace, e.extrelocatable, e.extowner::regrole,
	              coalesce(quote_literal(obj_description(e.oid, 'pg_extension')), '-'))
	  FROM pg_extension e WHERE e.extname = 'leadscore'
	UNION ALL
	SELECT format('configuration table %s | condition %s', c.tbl::regclass, quote_literal(c.cond))
	  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c (tbl, cond) WHERE e.extname = 'leadscore'
	UNION ALL
	-- The extension's schema (not a member: it holds the members): owner, privileges, comment.
	SELECT format('schema %s | owner %s | acl %s | comment %s', n.nspname, n.nspowner::regrole,
	              coalesce(n.nspacl::text, '(default)'), coalesce(quote_literal(obj_description(n.oid, 'pg_namespace')), '-'))
	  FROM pg_namespace n JOIN ext ON n.oid = ext.extnamespace
	UNION ALL
	SELECT format('default privileges of %s for %s | %s', d.defaclrole::regrole, d.defaclobjtype, d.defaclacl)
	  FROM pg_default_acl d JOIN ext ON d.defaclnamespace = ext.extnamespace
	UNION ALL
	-- Anything in the schema that is not a member (an object the install made but did not register).
	SELECT 'not a member: relation ' || c.oid::regclass
	  FROM pg_class c JOIN ext ON c.relnamespace = ext.extnamespace
	 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.oid NOT IN (SELECT oid FROM rel)
	UNION ALL
	SELECT 'not a member: function ' || p.oid::regprocedure
	  FROM pg_proc p JOIN ext ON p.pronamespace = ext.extnamespace
	 WHERE p.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_proc'::regclass)
	UNION ALL
	SELECT 'not a member: type ' || t.oid::regtype
	  FROM pg_type t JOIN ext ON t.typnamespace = ext.extnamespace
	 WHERE t.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_type'::regclass)
	   AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
	   AND NOT (t.typelem <> 0 AND t.typsubscript = 'array_subscript_handler'::regproc)
	UNION ALL
	SELECT 'not a member: event trigger ' || e.evtname
	  FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid JOIN ext ON p.pronamespace = ext.extnamespace
	 WHERE e.oid NOT IN (SELECT objid FROM member WHERE classid = 'pg_event_trigger'::regclass))
SELECT l FROM lines AS x (l) ORDER BY l COLLATE "C";
