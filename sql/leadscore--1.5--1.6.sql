-- leadscore 1.5 -> 1.6: one source of truth for rule validation. The checks of a rule that read the row
-- alone are CHECK constraints of leadscore.rule, as those of the other configuration tables already were;
-- the trigger leadscore._check_rule keeps the checks that read other tables (the model, the tracked
-- table, the category, the trained model; the condition, compiled as its author); ModelSpec::validate in
-- the library checks what only the whole model shows (names unique across rules and categories, bands).
-- The library gives the same answer as the constraints for every value. No row changes: every existing
-- rule already passed the same checks in the trigger.
\echo Use "ALTER EXTENSION leadscore UPDATE TO '1.6'" to load this file. \quit

ALTER TABLE leadscore.rule
	ADD CONSTRAINT "points must be finite" CHECK (points NOT IN ('Infinity', '-Infinity', 'NaN')),
	ADD CONSTRAINT "cap must be positive and finite" CHECK (cap > 0 AND cap < 'Infinity'),
	ADD CONSTRAINT "a cap per period and once_per_lead exclude each other"
		CHECK (NOT (once_per_lead AND max_per_period IS NOT NULL));
