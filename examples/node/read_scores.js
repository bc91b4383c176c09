#!/usr/bin/env node
// Reads leadscore's scores with query parameters (node-postgres): the best leads of a model now
// (leadscore.top_leads) and one lead's score at another instant (leadscore.scores_at).
//
// The role needs the reader profile (SELECT leadscore.grant_profile('reader', 'that_role')) and SELECT on
// the model's lead table (docs/security.md). Connects with libpq's variables (PGHOST, PGPORT...).
//
//   node read_scores.js saas                                  the 10 best leads of model saas
//   node read_scores.js saas --top 20 --lead 42 --as-of '2026-01-31 12:00+00'
//
// Lead keys are text in leadscore and stay strings here: a bigint key above 2^53 would be rounded as a
// JavaScript number.
'use strict';
const { Client } = require('pg');

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

async function main() {
  const model = process.argv[2];
  if (!model || model.startsWith('--')) {
    console.error('usage: node read_scores.js MODEL [--top N] [--lead KEY] [--as-of TIMESTAMPTZ]');
    return 2;
  }
  const top = Number(option('--top', '10'));
  const lead = option('--lead', null);
  const asOf = option('--as-of', null);
  const client = new Client();
  await client.connect();
  try {
    // Parameters, never string concatenation: the model and keys come from users.
    const best = await client.query('SELECT lead, score, stage FROM leadscore.top_leads($1, $2)', [model, top]);
    console.log(`top ${top} of ${model}:`);
    for (const r of best.rows) {
      console.log(`  ${r.lead.padStart(20)}  ${r.score.toFixed(2).padStart(10)}  ${r.stage ?? '-'}`);
    }
    if (lead !== null) {
      // scores_at(model, as_of): every lead at that instant; coalesce: NULL means now.
      const one = await client.query(
        'SELECT score, stage FROM leadscore.scores_at($1, coalesce($2::timestamptz, now())) WHERE lead = $3',
        [model, asOf, lead]);
      const when = asOf ?? 'now';
      if (one.rows.length === 0) console.log(`lead ${lead} at ${when}: not a lead of ${model}`);
      else console.log(`lead ${lead} at ${when}: score ${one.rows[0].score.toFixed(2)}, stage ${one.rows[0].stage ?? '-'}`);
    }
  } finally {
    await client.end();
  }
  return 0;
}

main().then((status) => { process.exitCode = status; },
            (err) => { console.error(err.message); process.exitCode = 1; });
