"""Independent reference for leadscore's scoring semantics, shared by the property tests (exactness.py,
timeline.py) and the concurrency test (concurrent.py).

The reference reads the raw rows of the tracked tables and evaluates every rule condition by asking
PostgreSQL (`SELECT key, (cond) IS TRUE, ... FROM table`), then computes fit, engagement, score, stage,
grade and last_activity in Python from the rule definitions kept here (the test's source of truth, which
it also writes into leadscore's configuration tables). It never reads leadscore's state.

Semantics implemented (docs/concepts.md, docs/time.md):
  fit rule r:    capped_r = cap_r(points_r) if the condition holds for the lead row, else 0
  event rule r:  capped_r = cap_r(points_r * sum_{matching events e, e.at <= t} 0.5^((t - e.at) / half_life))
                 once_per_lead: only the earliest matching event counts (if its time <= t)
                 max_per_period N, period P (1.2): in each bucket floor((e.at - 2000-01-03 UTC) / P) only the
                 earliest N matching events count
                 events of a table without time column never decay and count at every t
                 grace period g (1.1): no decay event by event; each rule's total instead is
                 cap_r(points_r * matching events * 0.5^(max(0, t - last_activity - g) / half_life))
  cap_r(x) = clamp(x, -cap, cap)
  category c:    sub_c = sum of capped_r in c; contribution = weight_c * clamp(sub_c, -cap_c, cap_c),
                 shared between the rules of c in proportion to capped_r (rules without category: weight 1)
  fit = sum of weighted lead-rule shares; engagement = sum of weighted event-rule shares
  inactivity (1.1): the points of the step with the largest `after` <= t - last_activity (none without activity)
  score = clamp(fit + engagement + inactivity, floor, ceiling); stage = band with the highest min_score <= score
  engagement reset (1.2): with R the latest reset_at <= t of (model, lead), timed events with at < R count
                 in no event rule at t (once_per_lead: the earliest at or after R; caps: among those); they
                 still count in last_activity; events of tables without time column are not affected
  last_activity = latest event time <= t in any tracked (timed) event table
  a key is scored iff it is in the lead table or has an event with a non-NULL lead
"""

import bisect
import copy
import datetime
import math
import traceback

US_PER_DAY = 86400 * 1000000
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
NEG_INF = float('-inf')


# --------------------------------------------------------------------------------------------------
# Configuration (the test's source of truth)
# --------------------------------------------------------------------------------------------------

def rule(name, source, condition, points, cap=None, category=None, once=False, enabled=True, per=None):
    """per: a frequency cap (max_per_period, period), the period one of PERIODS."""
    return dict(name=name, source=source, condition=condition, points=float(points), cap=cap,
                category=category, once=once, enabled=enabled, per=per)


# Fixed-length periods of frequency caps, in microseconds; buckets count from Monday 2000-01-03 00:00 UTC.
PERIODS = {'1 hour': 3600 * 1000000, '1 day': 86400 * 1000000, '7 days': 7 * 86400 * 1000000,
           '30 days': 30 * 86400 * 1000000}
PERIOD_EPOCH_US = 946857600 * 1000000        # 2000-01-03 00:00 UTC in microseconds since the Unix epoch


def capped_matches(matches, per):
    """The matching event times that count under a frequency cap: the earliest N of each period."""
    n, period = per[0], PERIODS[per[1]]
    seen = {}
    out = []
    for at in sorted(matches):
        b = (at - PERIOD_EPOCH_US) // period
        seen[b] = seen.get(b, 0) + 1
        if seen[b] <= n:
            out.append(at)
    return out


class Model:
    """A model as the test defines it. Table names are unqualified; `schema` qualifies them."""

    def __init__(self, name, schema, half_life_days, floor, ceiling, lead_table, key_column, key_type,
                 event_tables, categories, rules, stages, fit_bands=(), eng_bands=(), grace_days=None,
                 inactivity=()):
        self.name = name
        self.schema = schema
        self.half_life_days = half_life_days          # None: no decay
        self.grace_days = grace_days                  # grace period (1.1; with a half-life only)
        self.inactivity = list(inactivity)            # inactivity steps (1.1): [(name, after_days, points)]
        self.floor = floor
        self.ceiling = ceiling
        self.lead_table = lead_table
        self.key_column = key_column
        self.key_type = key_type                      # 'bigint', 'text', ...
        self.event_tables = list(event_tables)        # [(table, lead_column, time_column or None)]
        self.categories = dict(categories)            # name -> [weight, cap]
        self.rules = list(rules)                      # [rule(...)]
        self.stages = list(stages)                    # [(name, min_score)]
        self.fit_bands = list(fit_bands)
        self.eng_bands = list(eng_bands)

    def copy(self):
        return copy.deepcopy(self)

    @property
    def half_life_us(self):
        return None if self.half_life_days is None else self.half_life_days * US_PER_DAY

    @property
    def grace_us(self):
        return None if self.grace_days is None else self.grace_days * US_PER_DAY

    def q(self, table):
        return '%s.%s' % (self.schema, table)

    def rule_by_name(self, name):
        for r in self.rules:
            if r['name'] == name:
                return r
        raise KeyError(name)

    def check_grade(self):
        # The grade is only compared when both axes have bands reaching -Infinity (always defined).
        return (any(m == NEG_INF for _, m in self.fit_bands) and any(m == NEG_INF for _, m in self.eng_bands))

    # -- writing the configuration into leadscore's tables -----------------------------------------
    def install_sql(self):
        """Statements (sql, params) that create the model in leadscore's configuration tables."""
        out = []
        days = lambda d: None if d is None else '%r days' % d
        out.append(('INSERT INTO leadscore.model (name, half_life, grace, floor, ceiling, description) '
                    'VALUES (%s, %s::interval, %s::interval, %s, %s, %s)',
                    (self.name, days(self.half_life_days), days(self.grace_days), self.floor, self.ceiling,
                     'leadscore property test')))
        out.append(('SELECT leadscore.track_leads(%s, %s::regclass, %s)',
                    (self.name, self.q(self.lead_table), self.key_column)))
        for t, lc, tc in self.event_tables:
            out.append(('SELECT leadscore.track_events(%s, %s::regclass, %s, %s)', (self.name, self.q(t), lc, tc)))
        for c, (w, cap) in self.categories.items():
            out.append(('INSERT INTO leadscore.category (model, name, weight, cap) VALUES (%s, %s, %s, %s)',
                        (self.name, c, w, cap)))
        for r in self.rules:
            out.append(self.insert_rule_sql(r))
        for s, after, points in self.inactivity:
            out.append(('INSERT INTO leadscore.inactivity_rule (model, name, after, points) '
                        'VALUES (%s, %s, %s::interval, %s)', (self.name, s, days(after), points)))
        for s, m in self.stages:
            out.append(('INSERT INTO leadscore.stage (model, name, min_score) VALUES (%s, %s, %s)', (self.name, s, m)))
        for axis, bands in (('fit', self.fit_bands), ('engagement', self.eng_bands)):
            for s, m in bands:
                out.append(('INSERT INTO leadscore.grade_band (model, axis, name, min_score) VALUES (%s, %s, %s, %s)',
                            (self.name, axis, s, m)))
        return out

    def insert_rule_sql(self, r):
        per = r.get('per') or (None, None)
        return ('INSERT INTO leadscore.rule (model, name, source, condition, points, cap, category, once_per_lead, '
                'enabled, max_per_period, period) VALUES (%s, %s, %s::regclass, %s, %s, %s, %s, %s, %s, %s, %s::interval)',
                (self.name, r['name'], self.q(r['source']), r['condition'], r['points'], r['cap'], r['category'],
                 r['once'], r['enabled'], per[0], per[1]))


# --------------------------------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------------------------------

def us_to_dt(us):
    return EPOCH + datetime.timedelta(microseconds=us)


def dt_to_us(dt):
    return (dt - EPOCH) // datetime.timedelta(microseconds=1)


def us_to_tstz_literal(us):
    return us_to_dt(us).isoformat()                       # '2024-01-02T03:04:05.123456+00:00'


def us_to_ts_literal(us):
    return us_to_dt(us).replace(tzinfo=None).isoformat()  # read as UTC by leadscore


# An exact timestamptz from integer microseconds since the Unix epoch (for %s placeholders).
AS_OF_SQL = "('epoch'::timestamptz + %s::bigint * interval '1 microsecond')"
# Integer microseconds since the Unix epoch of a timestamptz, or of a timestamp read as UTC.
def epoch_us_sql(expr):
    return '(extract(epoch from %s) * 1000000)::bigint' % expr


def db_now_us(cur):
    cur.execute('SELECT ' + epoch_us_sql('clock_timestamp()'))
    return cur.fetchone()[0]


# --------------------------------------------------------------------------------------------------
# Raw data
# --------------------------------------------------------------------------------------------------

class Raw:
    """The rows of a model's tracked tables with each enabled rule's condition evaluated by PostgreSQL."""

    def __init__(self):
        self.lead_rules = []        # enabled lead rules, in order
        self.event_rules = {}       # table -> enabled rules on it, in order
        self.leads = {}             # key text -> [bool per lead rule]
        self.events = {}            # key text -> [(table, at_us or None, [bool per rule of table])]
        self.resets = {}            # key text -> [reset_at_us] (engagement resets, 1.2)


def fetch_raw(cur, model):
    raw = Raw()
    raw.lead_rules = [r for r in model.rules if r['enabled'] and r['source'] == model.lead_table]
    conds = ''.join(', (%s) IS TRUE' % r['condition'] for r in raw.lead_rules)
    cur.execute('SELECT %s::text%s FROM %s' % (model.key_column, conds, model.q(model.lead_table)))
    for row in cur.fetchall():
        assert row[0] not in raw.leads, 'duplicate lead key %r' % row[0]
        raw.leads[row[0]] = list(row[1:])
    for t, lc, tc in model.event_tables:
        rules = [r for r in model.rules if r['enabled'] and r['source'] == t]
        raw.event_rules[t] = rules
        conds = ''.join(', (%s) IS TRUE' % r['condition'] for r in rules)
        at = epoch_us_sql(tc) if tc else 'NULL::bigint'
        cur.execute('SELECT %s::text, %s%s FROM %s WHERE %s IS NOT NULL' % (lc, at, conds, model.q(t), lc))
        for row in cur.fetchall():
            raw.events.setdefault(row[0], []).append((t, row[1], list(row[2:])))
    if has_resets(cur):
        cur.execute('SELECT lead, ' + epoch_us_sql('reset_at') + ' FROM leadscore.engagement_resets WHERE model = %s',
                    (model.name,))
        for key, at in cur.fetchall():
            raw.resets.setdefault(key, []).append(at)
    return raw


def has_resets(cur):
    cur.execute("SELECT to_regclass('leadscore.engagement_resets') IS NOT NULL")
    return cur.fetchone()[0]


# --------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------

def clamp(x, lo, hi):
    if lo is not None and x < lo:
        x = lo
    if hi is not None and x > hi:
        x = hi
    return x


def cap_of(x, cap):
    return x if cap is None else clamp(x, -cap, cap)


def band_for(bands, score):
    best = None
    for name, m in bands:
        if m <= score and (best is None or m > best[1]):
            best = (name, m)
    return None if best is None else best[0]


class Score:
    __slots__ = ('score', 'fit', 'engagement', 'stage', 'grade', 'last_activity', 'rules', 'inactivity',
                 'stage_alts', 'grade_alts')

    def __init__(self, score, fit, engagement, stage, grade, last_activity, rules=None, inactivity=0.0):
        self.score, self.fit, self.engagement = score, fit, engagement
        self.stage, self.grade, self.last_activity = stage, grade, last_activity
        self.rules = rules  # name -> (kind, hits, capped, weighted)
        self.inactivity = inactivity  # points of the inactivity step that applies (the reference's only)
        # Stages and grades also acceptable when a value lies within the tolerance of a band's bound.
        self.stage_alts = self.grade_alts = ()

    def __repr__(self):
        return ('Score(score=%r, fit=%r, engagement=%r, stage=%r, grade=%r, last_activity=%r)'
                % (self.score, self.fit, self.engagement, self.stage, self.grade, self.last_activity))


class LeadRef:
    """One lead of a model at any instant. What does not depend on the instant (the fit rules that hold, the
    events that match each event rule, the lead's activity and resets in time order) is worked out once;
    at(t) then applies the semantics at t. score_lead asks one instant; timeline.py's minute-by-minute
    replay asks tens of thousands of the same lead."""

    def __init__(self, model, raw, key):
        self.model = model
        fitrow = raw.leads.get(key)
        self.fit_contrib = []        # (rule, is_event, hits, capped) of the lead rules: the same at every t
        for i, r in enumerate(raw.lead_rules):
            hit = bool(fitrow and fitrow[i])
            self.fit_contrib.append((r, False, int(hit), cap_of(r['points'], r['cap']) if hit else 0.0))
        self.events = raw.events.get(key, [])
        self.times = sorted(at for _, at, _ in self.events if at is not None)   # activity, in time order
        self.resets = sorted(raw.resets.get(key, []))
        self.event_rules = [(t, j, r) for t, _, _ in model.event_tables for j, r in enumerate(raw.event_rules[t])]
        self.counted_by_reset = {}   # reset in force (None: none) -> per event rule, the times that may count

    def counted(self, reset):
        """Per event rule, the times of the matching events that count (None: an event without time) once
        the engagement reset `reset` is in force; which of them are at or before t is for at() to say."""
        if reset not in self.counted_by_reset:
            out = []
            for t, j, r in self.event_rules:
                matches = [at for (tt, at, m) in self.events
                           if tt == t and m[j] and (at is None or reset is None or at >= reset)]
                if r.get('per'):
                    matches = capped_matches(matches, r['per'])
                if r['once'] and matches:
                    if any(at is None for at in matches):
                        matches = [None]
                    else:
                        matches = [min(matches)]
                out.append(matches)
            self.counted_by_reset[reset] = out
        return self.counted_by_reset[reset]

    def at(self, as_of, detail=True):
        """The Score at as_of; detail=False leaves out what only the comparisons with leadscore read (each
        rule's values, the bands acceptable within the tolerance)."""
        model = self.model
        hl = model.half_life_us
        n = bisect.bisect_right(self.times, as_of)
        last = self.times[n - 1] if n else None
        n = bisect.bisect_right(self.resets, as_of)
        reset = self.resets[n - 1] if n else None
        # Grace period: events do not decay one by one; every rule's total fades from last + grace.
        grace = model.grace_us if hl is not None else None
        per_event = hl is not None and grace is None
        fade = 1.0
        if grace is not None and last is not None:
            fade = 0.5 ** (max(0, as_of - last - grace) / hl)
        contrib = list(self.fit_contrib)
        for (_, _, r), matches in zip(self.event_rules, self.counted(reset)):
            total = 0.0
            hits = 0
            for at in matches:
                if at is None:
                    total += 1.0
                    hits += 1
                elif at <= as_of:
                    total += 0.5 ** ((as_of - at) / hl) if per_event else 1.0
                    hits += 1
            contrib.append((r, True, hits, cap_of(r['points'] * total * fade, r['cap'])))
        # Categories: weight x capped subtotal, shared in proportion between the rules of the category
        # (rules without category: weight 1).
        share = {}
        if model.categories:
            sub = {}
            for r, _, _, c in contrib:
                if r['category'] is not None:
                    sub[r['category']] = sub.get(r['category'], 0.0) + c
            for cat, s in sub.items():
                w, cap = model.categories[cat]
                share[cat] = (w, math.copysign(cap, s) / s if cap is not None and abs(s) > cap else 1.0)
        fit = eng = 0.0
        rules = {} if detail else None
        for r, is_event, hits, c in contrib:
            w, f = share[r['category']] if r['category'] is not None else (1.0, 1.0)
            weighted = w * c * f
            if is_event:
                eng += weighted
            else:
                fit += weighted
            if detail:
                rules[r['name']] = ('event' if is_event else 'lead', hits, c, weighted)
        # Inactivity steps: the one with the largest `after` the lead's silence reaches (none without activity).
        step = None
        if last is not None:
            for name, after_days, points in model.inactivity:
                if after_days * US_PER_DAY <= as_of - last and (step is None or after_days > step[1]):
                    step = (name, after_days, points)
        inactivity = 0.0 if step is None else float(step[2])
        if detail:
            for name, _, points in model.inactivity:
                hit = step is not None and name == step[0]
                rules[name] = ('inactivity', int(hit), float(points) if hit else 0.0, float(points) if hit else 0.0)
        score = clamp(fit + eng + inactivity, model.floor, model.ceiling)
        grade = None
        if model.fit_bands and model.check_grade():
            grade = band_for(model.fit_bands, fit) + band_for(model.eng_bands, eng)
        out = Score(score, fit, eng, band_for(model.stages, score), grade, last, rules, inactivity)
        if detail:
            out.stage_alts = {band_for(model.stages, x) for x in near(score)}
            if grade is not None:
                out.grade_alts = {band_for(model.fit_bands, f) + band_for(model.eng_bands, e)
                                  for f in near(fit) for e in near(eng)}
        return out


def score_lead(model, raw, key, as_of):
    return LeadRef(model, raw, key).at(as_of)


def near(x, tol=1e-9):
    eps = tol * max(1.0, abs(x))
    return (x - eps, x, x + eps)


def reference_scores(model, raw, as_of):
    keys = set(raw.leads) | set(raw.events)
    return {k: score_lead(model, raw, k, as_of) for k in keys}


# --------------------------------------------------------------------------------------------------
# Reading leadscore and comparing
# --------------------------------------------------------------------------------------------------

def db_scores(cur, model_name, as_of):
    cur.execute('SELECT lead, score, fit, engagement, stage, grade, ' + epoch_us_sql('last_activity') +
                ' FROM leadscore.scores_at(%s, ' + AS_OF_SQL + ')', (model_name, as_of))
    out = {}
    dups = []
    for row in cur.fetchall():
        if row[0] in out:
            dups.append(row[0])
        out[row[0]] = Score(*row[1:])
    return out, dups


def close(a, b, tol=1e-9):
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return False
    return abs(a - b) <= tol * max(1.0, abs(b))


def compare(got, ref, check_grade, dups=(), label=''):
    """Differences between scores read from leadscore (got) and the reference (ref), as text lines."""
    out = ['%s: lead %s appears twice' % (label, k) for k in dups]
    for k in sorted(set(ref) - set(got)):
        out.append('%s: lead %s missing (expected %r)' % (label, k, ref[k]))
    for k in sorted(set(got) - set(ref)):
        out.append('%s: lead %s unexpected (got %r)' % (label, k, got[k]))
    for k in sorted(set(got) & set(ref), key=lambda s: (len(s), s)):
        g, r = got[k], ref[k]
        bad = []
        for f in ('score', 'fit', 'engagement'):
            if not close(getattr(g, f), getattr(r, f)):
                bad.append('%s got %r expected %r' % (f, getattr(g, f), getattr(r, f)))
        if g.stage != r.stage and g.stage not in r.stage_alts:
            bad.append('stage got %r expected %r' % (g.stage, r.stage))
        if check_grade and g.grade != r.grade and g.grade not in r.grade_alts:
            bad.append('grade got %r expected %r' % (g.grade, r.grade))
        if g.last_activity != r.last_activity:
            bad.append('last_activity got %r expected %r' % (g.last_activity, r.last_activity))
        if bad:
            out.append('%s: lead %s: %s' % (label, k, '; '.join(bad)))
    return out


def check_explain(cur, model, lead, as_of, got_score, ref_score):
    """leadscore.explain: sum(weighted) = fit + engagement, and each rule's capped/weighted value."""
    cur.execute('SELECT rule, kind, hits, capped, weighted FROM leadscore.explain(%s, %s, ' + AS_OF_SQL + ')',
                (model.name, lead, as_of))
    rows = cur.fetchall()
    out = []
    # Rows of kind 'limit' (the extension reports the floor/ceiling adjustment as a row, e.g. "(floor)"):
    # the rule rows (and the inactivity step's) sum to fit + engagement + inactivity, all rows to the score.
    # (scores_at has no inactivity column: the reference's is used.)
    total = sum(r[4] for r in rows if r[4] is not None and r[1] != 'limit')
    limits = [r for r in rows if r[1] == 'limit']
    if got_score is not None and not close(total, got_score.fit + got_score.engagement + ref_score.inactivity):
        out.append('explain %s lead %s: sum(weighted) %r != fit + engagement + inactivity %r'
                   % (model.name, lead, total, got_score.fit + got_score.engagement + ref_score.inactivity))
    if got_score is not None and limits:
        everything = total + sum(r[4] for r in limits if r[4] is not None)
        if not close(everything, got_score.score):
            out.append('explain %s lead %s: sum(weighted) with limit rows %r != score %r'
                       % (model.name, lead, everything, got_score.score))
    seen = {}
    for name, kind, hits, capped, weighted in rows:
        if name in seen:
            out.append('explain %s lead %s: rule %s appears twice' % (model.name, lead, name))
        seen[name] = (capped, weighted)
    for name, (kind, hits, capped, weighted) in ref_score.rules.items():
        if name not in seen:
            if capped != 0 or weighted != 0:
                out.append('explain %s lead %s: rule %s missing (expected capped %r weighted %r)'
                           % (model.name, lead, name, capped, weighted))
            continue
        gc, gw = seen[name]
        if not close(gc, capped) or not close(gw, weighted):
            out.append('explain %s lead %s: rule %s capped/weighted got %r/%r expected %r/%r'
                       % (model.name, lead, name, gc, gw, capped, weighted))
    return out


# --------------------------------------------------------------------------------------------------
# The demo CRM used by both tests
# --------------------------------------------------------------------------------------------------

def crm_ddl(schema):
    return [
        'DROP SCHEMA IF EXISTS %s CASCADE' % schema,
        'CREATE SCHEMA %s' % schema,
        '''CREATE TABLE %s.lead (id bigint PRIMARY KEY, industry text, employees int, country text,
                                 email text, name text)''' % schema,
        '''CREATE TABLE %s.web_event (id bigserial PRIMARY KEY, lead_id bigint, type text NOT NULL, url text,
                                      amount numeric(12,2), occurred_at timestamptz NOT NULL)''' % schema,
        # The second event table dates its events with a timestamp without time zone (read as UTC).
        '''CREATE TABLE %s.email_event (id bigserial PRIMARY KEY, lead_id bigint, type text NOT NULL, url text,
                                        amount numeric(12,2), sent_at timestamp NOT NULL)''' % schema,
        # An event table without time column (tracked by the model without half-life only).
        'CREATE TABLE %s.note (id bigserial PRIMARY KEY, lead_id bigint, kind text)' % schema,
        # A text-keyed CRM.
        'CREATE TABLE %s.contact (email text PRIMARY KEY, company text, employees int)' % schema,
        '''CREATE TABLE %s.contact_event (id bigserial PRIMARY KEY, contact_email text, type text NOT NULL,
                                          at timestamptz NOT NULL)''' % schema,
        'CREATE INDEX ON %s.web_event (lead_id)' % schema,
        'CREATE INDEX ON %s.email_event (lead_id)' % schema,
        'CREATE INDEX ON %s.note (lead_id)' % schema,
        'CREATE INDEX ON %s.contact_event (contact_email)' % schema,
    ]


def crm_models(schema, prefix, with_contacts=True):
    saas = Model(
        prefix + 'saas', schema, 30, -40.0, 100.0, 'lead', 'id', 'bigint',
        [('web_event', 'lead_id', 'occurred_at'), ('email_event', 'lead_id', 'sent_at')],
        {'sector': [0.25, 10.0], 'size': [0.30, None], 'engagement': [0.35, 40.0],
         'negative': [1.0, 25.0], 'intent': [1.0, 20.0]},
        [
            # fit
            rule('tech', 'lead', "industry = 'Technology'", 10, category='sector'),
            rule('retail', 'lead', "industry = 'Retail'", 8, category='sector'),
            rule('size', 'lead', 'employees BETWEEN 100 AND 500', 15, category='size'),
            rule('personal_email', 'lead', "split_part(email, '@', 2) IN ('gmail.com', 'yahoo.com', 'hotmail.com')",
                 -10, category='negative'),
            rule('fake_name', 'lead', "lower(name) IN ('azerty', 'asdf', 'qwerty', 'test')", -30, category='intent'),
            rule('country', 'lead', "country IN ('US', 'FR', 'DE')", 12, category='intent'),
            # behaviour
            rule('pricing', 'web_event', "type = 'page_view' AND url LIKE '%/pricing%'", 10, category='engagement'),
            rule('webinar', 'web_event', "type = 'webinar'", 15, category='intent'),
            rule('white_paper', 'web_event', "type = 'download' AND url LIKE '%white-paper%'", 5),
            rule('demo', 'web_event', "type = 'demo_request'", 25, once=True, category='engagement'),
            rule('big_purchase', 'web_event', "type = 'purchase' AND amount >= 1000", 30, cap=60.0),
            rule('email_open', 'email_event', "type = 'email_open'", 1, cap=10.0, category='engagement'),
            rule('unsubscribe', 'email_event', "type = 'unsubscribe'", -20, cap=20.0, category='negative'),
            rule('email_click', 'email_event', "type = 'email_click' AND url LIKE '%/pricing%'", 3, once=True),
            # frequency caps (1.2)
            rule('visits_monthly', 'web_event', "type = 'page_view'", 2, per=(2, '30 days')),
            rule('opens_daily', 'email_event', "type IN ('email_open', 'email_click')", 1.5, category='engagement',
                 per=(1, '1 day')),
        ],
        [('cold', NEG_INF), ('MQL', 15.0), ('SQL', 30.0), ('opportunity', 50.0)],
        fit_bands=[('C', NEG_INF), ('B', 5.0), ('A', 12.0)],
        eng_bands=[('3', NEG_INF), ('2', 5.0), ('1', 20.0)])
    nodecay = Model(
        prefix + 'nodecay', schema, None, None, 40.0, 'lead', 'id', 'bigint',
        [('web_event', 'lead_id', 'occurred_at'), ('email_event', 'lead_id', 'sent_at'), ('note', 'lead_id', None)],
        {'mixed': [2.0, 6.0]},
        [
            rule('big', 'lead', 'employees > 1000', 5),
            rule('tech', 'lead', "industry = 'Technology'", 2.5, category='mixed'),
            rule('visit', 'web_event', "type = 'page_view'", 1, category='mixed'),
            rule('any_email', 'email_event', "type IN ('email_open', 'email_click')", 0.5, cap=8.0),
            rule('demo', 'web_event', "type = 'demo_request'", 10, once=True),
            rule('call', 'note', "kind = 'call'", 4, cap=12.0),
            rule('first_meeting', 'note', "kind = 'meeting'", 6, once=True),
            rule('complaint', 'note', "kind = 'complaint'", -7),
            rule('weekly_visits', 'web_event', "type IN ('page_view', 'webinar')", 0.5, category='mixed',
                 per=(1, '7 days')),
            rule('hourly_email', 'email_event', 'true', 0.25, per=(1, '1 hour')),
        ],
        [('engaged', 5.0), ('hot', 15.0)])
    models = [saas, nodecay]
    if with_contacts:
        contacts = Model(
            prefix + 'contacts', schema, 7, 0.0, None, 'contact', 'email', 'text',
            [('contact_event', 'contact_email', 'at')],
            {},
            [
                rule('large', 'contact', 'employees > 1000', 20),
                rule('no_company', 'contact', 'company IS NULL', -5),
                rule('visit', 'contact_event', "type = 'visit'", 3, cap=30.0),
                rule('reply', 'contact_event', "type = 'reply'", 10, once=True),
                rule('bounce', 'contact_event', "type = 'bounce'", -8),
                rule('visit_days', 'contact_event', "type = 'visit'", 2, per=(1, '1 day')),
            ],
            [('new', NEG_INF), ('warm', 10.0), ('hot', 30.0)])
        models.append(contacts)
    return models


def sql_reference_scores(cur, model, as_of, resets_table='leadscore.engagement_resets'):
    """A second, independent formulation of the semantics as one SQL query (used to check the Python
    reference itself, e.g. in --dry-run where there is no extension to compare with). Grace periods and
    inactivity steps are not in it: the models that it checks have none. The CRM's tables are those of
    model.schema, the engagement resets those of resets_table (copies of them, on a Citus cluster)."""
    assert model.grace_days is None and not model.inactivity, 'sql_reference_scores: no grace, no inactivity'
    def lit(x):
        return 'NULL::float8' if x is None else "'%r'::float8" % float(x)

    def capped(expr, cap):
        return expr if cap is None else 'greatest(-%s, least(%s, %s))' % (lit(cap), lit(cap), expr)

    t = int(as_of)
    hl = model.half_life_us
    resets = has_resets(cur)
    parts = []
    key_parts = ['SELECT %s::text AS k FROM %s' % (model.key_column, model.q(model.lead_table))]
    last_parts = []
    for r in model.rules:
        if not r['enabled']:
            continue
        cat = 'NULL::text' if r['category'] is None else "'%s'::text" % r['category']
        if r['source'] == model.lead_table:
            parts.append("SELECT %s::text AS k, '%s'::text AS r, false AS ev, %s AS cat, %s AS v FROM %s WHERE (%s) IS TRUE"
                         % (model.key_column, r['name'], cat, capped(lit(r['points']), r['cap']),
                            model.q(model.lead_table), r['condition']))
            continue
        _, lc, tc = [e for e in model.event_tables if e[0] == r['source']][0]
        at = epoch_us_sql(tc) if tc else 'NULL::bigint'
        src = model.q(r['source'])
        if tc and resets:
            # Not before the lead's latest reset at or before t.
            src += (" LEFT JOIN (SELECT r.lead AS reset_lead, max(%s) AS reset_us FROM %s r "
                    "WHERE r.model = '%s' AND %s <= %d GROUP BY r.lead) rs ON rs.reset_lead = %s::text"
                    % (epoch_us_sql('r.reset_at'), resets_table, model.name, epoch_us_sql('r.reset_at'), t, lc))
        base = ('SELECT %s::text AS k, %s AS at FROM %s WHERE %s IS NOT NULL AND (%s) IS TRUE'
                % (lc, at, src, lc, r['condition']))
        if tc and resets:
            base += ' AND (rs.reset_us IS NULL OR %s >= rs.reset_us)' % at
        if r['once']:
            base = 'SELECT k, min(at) AS at FROM (%s) b GROUP BY k' % base
        if r.get('per'):
            # The earliest N of each period (the later ones are dropped whatever t is: prefix-stable).
            base = ('SELECT k, at FROM (SELECT k, at, row_number() OVER (PARTITION BY k, floor((at - %d)::numeric / %d) '
                    'ORDER BY at) AS rn FROM (%s) b0) b WHERE rn <= %d'
                    % (PERIOD_EPOCH_US, PERIODS[r['per'][1]], base, r['per'][0]))
        if tc is None:
            w = '1::float8'
        elif hl is None:
            w = 'CASE WHEN at <= %d THEN 1::float8 ELSE 0 END' % t
        else:
            w = 'CASE WHEN at <= %d THEN power(0.5::float8, (%d - at)::float8 / %r) ELSE 0 END' % (t, t, float(hl))
        parts.append("SELECT k, '%s'::text AS r, true AS ev, %s AS cat, %s AS v FROM (SELECT k, sum(%s) AS s FROM (%s) e GROUP BY k) x"
                     % (r['name'], cat, capped('%s * s' % lit(r['points']), r['cap']), w, base))
    for tname, lc, tc in model.event_tables:
        key_parts.append('SELECT %s::text FROM %s WHERE %s IS NOT NULL' % (lc, model.q(tname), lc))
        if tc:
            last_parts.append('SELECT %s::text AS k, %s AS at FROM %s WHERE %s IS NOT NULL AND %s <= %d'
                              % (lc, epoch_us_sql(tc), model.q(tname), lc, epoch_us_sql(tc), t))
    cats = ' UNION ALL '.join("SELECT '%s'::text AS name, %s AS weight, %s AS cap" % (c, lit(w), lit(cap))
                              for c, (w, cap) in model.categories.items()) or \
        'SELECT NULL::text AS name, NULL::float8 AS weight, NULL::float8 AS cap WHERE false'
    contrib = ' UNION ALL '.join(parts) or \
        'SELECT NULL::text AS k, NULL::text AS r, NULL::bool AS ev, NULL::text AS cat, NULL::float8 AS v WHERE false'
    last = ' UNION ALL '.join(last_parts) or 'SELECT NULL::text AS k, NULL::bigint AS at WHERE false'
    bands = lambda bs: ' UNION ALL '.join("SELECT '%s'::text AS name, %s AS m" % (n, lit(m)) for n, m in bs) or \
        'SELECT NULL::text AS name, NULL::float8 AS m WHERE false'
    sql = '''
        WITH keys AS (%(keys)s),
        c AS (%(contrib)s),
        cats AS (%(cats)s),
        sub AS (SELECT c.*, sum(v) OVER (PARTITION BY k, cat) AS s FROM c),
        w AS (SELECT sub.k, sub.ev,
                     CASE WHEN sub.cat IS NULL THEN v
                          WHEN cats.cap IS NOT NULL AND abs(s) > cats.cap THEN cats.weight * v * (sign(s) * cats.cap / s)
                          ELSE cats.weight * v END AS wv
                FROM sub LEFT JOIN cats ON cats.name = sub.cat),
        fe AS (SELECT k, coalesce(sum(wv) FILTER (WHERE NOT ev), 0) AS fit,
                         coalesce(sum(wv) FILTER (WHERE ev), 0) AS eng FROM w GROUP BY k),
        sc AS (SELECT keys.k, coalesce(fe.fit, 0) AS fit, coalesce(fe.eng, 0) AS eng,
                      greatest(%(floor)s, least(%(ceiling)s, coalesce(fe.fit, 0) + coalesce(fe.eng, 0))) AS score
                 FROM keys LEFT JOIN fe USING (k))
        SELECT sc.k, sc.score, sc.fit, sc.eng,
               (SELECT name FROM (%(stages)s) b WHERE b.m <= sc.score ORDER BY b.m DESC LIMIT 1),
               (SELECT name FROM (%(fitb)s) b WHERE b.m <= sc.fit ORDER BY b.m DESC LIMIT 1) ||
               (SELECT name FROM (%(engb)s) b WHERE b.m <= sc.eng ORDER BY b.m DESC LIMIT 1),
               la.at
          FROM sc LEFT JOIN (SELECT k, max(at) AS at FROM (%(last)s) l GROUP BY k) la USING (k)''' % dict(keys=' UNION '.join(key_parts), contrib=contrib, cats=cats, last=last,
                            floor=lit(model.floor), ceiling=lit(model.ceiling), stages=bands(model.stages),
                            fitb=bands(model.fit_bands), engb=bands(model.eng_bands))
    # greatest/least ignore NULLs, so a NULL floor or ceiling does not bound the score.
    cur.execute(sql)
    out = {}
    for row in cur.fetchall():
        out[row[0]] = Score(row[1], row[2], row[3], row[4], row[5] if model.check_grade() else None, row[6])
    return out


def drop_models(cur, models):
    cur.execute('DELETE FROM leadscore.model WHERE name = ANY(%s)', ([m.name for m in models],))


# --------------------------------------------------------------------------------------------------
# Self-test of the reference on hand-computed cases (no database needed)
# --------------------------------------------------------------------------------------------------

def selftest():
    day = US_PER_DAY
    m = Model('t', 's', 10, None, None, 'lead', 'id', 'bigint', [('ev', 'lead_id', 'at'), ('nt', 'lead_id', None)],
              {'c': [0.5, 10.0]},
              [rule('f', 'lead', 'x', 4, category='c'),
               rule('open', 'ev', 'x', 1, cap=10.0),
               rule('v', 'ev', 'x', 8, category='c'),
               rule('once', 'ev', 'x', 20, once=True),
               rule('neg', 'ev', 'x', -20, cap=20.0),
               rule('n', 'nt', 'x', 2)],
              [('low', NEG_INF), ('high', 30.0)])
    raw = Raw()
    raw.lead_rules = [m.rules[0]]
    raw.event_rules = {'ev': m.rules[1:5], 'nt': [m.rules[5]]}
    t = 1000 * day
    raw.leads = {'1': [True], '2': [False]}
    raw.events = {
        # 12 opens at t: capped at 10; one v at t - 10 days: 8 * 0.5 = 4; category c: 4 + 4 = 8 (no bind) * 0.5
        '1': [('ev', t, [True, False, False, False])] * 12 + [('ev', t - 10 * day, [False, True, False, False])],
        # once: earliest at t - 20 days -> 20 * 0.25 = 5; later ones ignored; an event after t ignored
        '2': [('ev', t - 10 * day, [False, False, True, False]), ('ev', t - 20 * day, [False, False, True, False]),
              ('ev', t + day, [False, False, True, True]), ('nt', None, [True]), ('nt', None, [True])],
        # neg: 3 at t -> -60 capped -20; v: 3 at t -> 24, category c cap 10 -> 10 * 0.5 = 5
        '3': [('ev', t, [False, True, False, True])] * 3,
    }
    s = reference_scores(m, raw, t)
    assert close(s['1'].fit, 0.5 * 4) and close(s['1'].engagement, 10 + 0.5 * 4), s['1']
    assert s['1'].last_activity == t and s['1'].stage == 'low'
    assert close(s['2'].engagement, 5 + 4) and close(s['2'].fit, 0) and s['2'].last_activity == t - 10 * day, s['2']
    assert close(s['3'].engagement, -20 + 5) and s['3'].stage == 'low', s['3']
    # Category cap binding on a category holding both a lead and an event rule: shared in proportion.
    raw.leads['3'] = [True]
    s = reference_scores(m, raw, t)
    assert close(s['3'].fit, 0.5 * 10 * 4 / 28) and close(s['3'].engagement, -20 + 0.5 * 10 * 24 / 28), s['3']
    assert close(s['3'].rules['v'][3], 0.5 * 10 * 24 / 28)
    # Floor, ceiling, stage.
    m.floor, m.ceiling = -5.0, 12.0
    s = reference_scores(m, raw, t)
    assert s['3'].score == -5.0 and s['1'].score == 12.0, (s['3'], s['1'])
    assert reference_scores(m, raw, t - 10000 * day)['1'].last_activity is None
    # No half-life: no decay.
    m.half_life_days = None
    s = reference_scores(m, raw, t)
    assert close(s['2'].engagement, 20 + 4)
    # Frequency caps: the earliest N of each period, periods from Monday 2000-01-03 UTC.
    d0 = PERIOD_EPOCH_US + 9002 * day      # a Monday
    assert capped_matches([d0 + 5, d0 + 1, d0 - 1, d0 + 3, d0 + day], (2, '1 day')) == [d0 - 1, d0 + 1, d0 + 3, d0 + day]
    assert capped_matches([d0 - 1, d0, d0 + 7 * day - 1, d0 + 7 * day], (1, '7 days')) == [d0 - 1, d0, d0 + 7 * day]
    m.rules[2]['per'] = (2, '1 day')
    raw.events['4'] = [('ev', d0 + h, [False, True, False, False]) for h in (5, 1, 3)]
    s = reference_scores(m, raw, d0 + day)
    assert s['4'].rules['v'][1] == 2 and close(s['4'].rules['v'][2], 16), s['4'].rules['v']
    # Engagement reset: before it as before; from it, only the events at or after it count in rules.
    raw.resets['4'] = [d0 + 3, d0 + 100 * day]
    assert reference_scores(m, raw, d0 + 2)['4'].rules['v'][1] == 1
    s = reference_scores(m, raw, d0 + day)
    assert s['4'].rules['v'][1] == 2 and s['4'].last_activity == d0 + 5, s['4'].rules['v']
    raw.resets['4'] = [d0 + 4]
    s = reference_scores(m, raw, d0 + day)
    assert s['4'].rules['v'][1] == 1 and s['4'].last_activity == d0 + 5, s['4'].rules['v']
    # Grace period (1.1): 3 visits of 1 point and a demo of 10; half-life 2 days, grace 1 day; last activity
    # at t. Full value until t + 1 day, then halves every 2 days: 13 at t + 1 day, 6.5 at t + 3 days.
    g = Model('g', 's', 2, None, None, 'lead', 'id', 'bigint', [('ev', 'lead_id', 'at')], {},
              [rule('visit', 'ev', 'x', 1), rule('demo', 'ev', 'x', 10, once=True)], [('hot', 10.0)],
              grace_days=1, inactivity=[('quiet', 2, -4), ('gone', 5, -9)])
    raw = Raw()
    raw.event_rules = {'ev': g.rules}
    raw.events = {'1': [('ev', t - 3 * day, [True, True]), ('ev', t - day, [True, True]), ('ev', t, [True, False])]}
    assert close(reference_scores(g, raw, t + day)['1'].engagement, 13)
    s = reference_scores(g, raw, t + 3 * day)['1']
    # Inactivity steps: exclusive, the longest silence reached: -4 from 2 days, -9 (not -13) from 5 days.
    assert close(s.engagement, 6.5) and s.inactivity == -4 and close(s.score, 2.5) and s.stage is None, s
    s = reference_scores(g, raw, t + 5 * day)['1']
    assert s.inactivity == -9 and close(s.score, 13 * 0.5 ** 2 - 9) and s.rules['gone'][1] == 1, s
    # Before the last event, activity (and the grace period) count from the one before: at t - 1 day,
    # 2 visits + the demo at full value, no step yet.
    s = reference_scores(g, raw, t - day)['1']
    assert close(s.score, 12) and s.inactivity == 0 and s.stage == 'hot' and s.last_activity == t - day, s
    # A lead without activity gets no inactivity step.
    raw.leads = {'2': []}
    assert reference_scores(g, raw, t)['2'].score == 0
    return True


def selftest_error():
    """None when the self-test passes, else what failed (for a suite to report as a failed check)."""
    try:
        selftest()
    except AssertionError:
        return traceback.format_exc()
    return None


if __name__ == '__main__':
    selftest()
    print('lsref selftest ok')
