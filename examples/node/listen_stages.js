#!/usr/bin/env node
// Listens for leadscore's stage changes and prints each one (node-postgres: npm install, in this folder).
//
// leadscore sends every recorded stage change with pg_notify on channel leadscore_stage when its
// transaction commits, as JSON:
//
//   {"model": "saas", "lead": "42", "from": "warm", "to": "MQL", "score": 55.2,
//    "at": "2026-01-31 10:00:00+00", "id": 1187}
//
// "lead" is always a JSON string, whatever the CRM's key type: keep it a string. A bigint key above
// 2^53 (9007199254740993) would be rounded by Number() or parseInt(); compare and store it as a string,
// or use BigInt(lead) for arithmetic. node-postgres also returns bigint columns (int8) as strings by
// default, for the same reason. "from" is null for a lead's first stage. A change whose payload would be
// too long for NOTIFY (8,000 bytes: a huge text key, very long names) carries "cut": true and its names
// cut to their first 300 bytes: the whole row is then read from leadscore.stage_changes by id and model
// (the reader profile, and SELECT on the lead table's key column: see docs/security.md).
//
// Connects with libpq's variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD), as node-postgres does.
//
//   node listen_stages.js                          until interrupted
//   node listen_stages.js --count 1 --timeout 60   the first change, or give up after 60 s
'use strict';
const { Client } = require('pg');

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const count = option('--count', 0); // stop after this many changes (0: never)
const timeout = option('--timeout', 0); // stop after this many seconds (0: never)

// The stage_changes row of a cut payload: by id (ids count per key type) and the model, of which the
// payload may hold only the first 300 bytes.
async function fullRow(client, change) {
  const { rows } = await client.query(
    `SELECT model, lead, from_stage, to_stage, score, changed_at FROM leadscore.stage_changes
      WHERE id = $1 AND starts_with(model, $2) ORDER BY model = $2 DESC LIMIT 1`,
    [change.id, change.model]);
  if (rows.length === 0) return change; // not visible to this role, or gone
  const r = rows[0];
  return { ...change, model: r.model, lead: r.lead, from: r.from_stage, to: r.to_stage, score: r.score,
           at: r.changed_at.toISOString() };
}

function show(change) {
  let lead = change.lead; // a string: never Number(change.lead)
  if (lead.length > 40) lead = `${lead.slice(0, 20)}... (${lead.length} characters)`;
  const cut = change.cut ? ' [payload cut: row read from stage_changes]' : '';
  console.log(`change ${change.id}: model ${change.model}, lead ${lead}, ${change.from ?? '-'} -> ${change.to}, ` +
              `score ${change.score}, at ${change.at}${cut}`);
}

async function main() {
  const client = new Client();
  await client.connect();
  let seen = 0;
  let timer = null;
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  // Notifications arrive in order; handle them one after the other (a cut one needs a query first).
  let queue = Promise.resolve();
  client.on('notification', (msg) => {
    if (msg.channel !== 'leadscore_stage') return;
    queue = queue.then(async () => {
      if (count && seen >= count) return;
      let change = JSON.parse(msg.payload);
      if (change.cut) change = await fullRow(client, change);
      show(change);
      seen += 1;
      if (count && seen >= count) finish(0);
    }).catch((err) => { console.error(err); finish(1); });
  });
  await client.query('LISTEN leadscore_stage');
  console.log('listening on leadscore_stage');
  if (timeout) {
    timer = setTimeout(() => {
      console.log(`timeout after ${timeout} s, ${seen} change(s)`);
      finish(count ? 1 : 0);
    }, timeout * 1000);
  }
  const status = await done;
  if (timer) clearTimeout(timer);
  await client.end();
  return status;
}

main().then((status) => { process.exitCode = status; },
            (err) => { console.error(err.message); process.exitCode = 1; });
