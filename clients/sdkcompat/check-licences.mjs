// Every package of package-lock.json must be under a licence keybroker
// takes (MPL-2.0, Apache-2.0, MIT, BSD, ISC), as the installed package
// declares it; an SPDX expression passes when an OR offers one of them,
// or when each part of an AND is one. Run after `npm ci`:
// node check-licences.mjs (cmd/keybroker/sdkcompat_test.go does).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const allowed = new Set(['MPL-2.0', 'Apache-2.0', 'MIT', 'ISC', 'BSD-2-Clause', 'BSD-3-Clause', '0BSD']);

function ok(expr) {
  const e = expr.trim().replace(/^\((.*)\)$/, '$1');
  if (/\sOR\s/.test(e)) return e.split(/\s+OR\s+/).some(ok);
  if (/\sAND\s/.test(e)) return e.split(/\s+AND\s+/).every(ok);
  return allowed.has(e);
}

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const bad = [];
let n = 0;
for (const [path, entry] of Object.entries(lock.packages)) {
  if (path === '' || entry.optional && entry.peer) continue;
  let declared;
  try {
    declared = JSON.parse(readFileSync(join(path, 'package.json'), 'utf8')).license;
  } catch {
    if (entry.optional) continue; // an optional package npm did not install
    bad.push(`${path}: not installed (run npm ci first)`);
    continue;
  }
  n++;
  const licence = typeof declared === 'object' && declared !== null ? declared.type : declared;
  if (typeof licence !== 'string' || !ok(licence)) bad.push(`${path}: ${JSON.stringify(declared)}`);
  else if (entry.license !== undefined && entry.license !== licence) bad.push(`${path}: the lock says ${entry.license}, the package ${licence}`);
}
if (bad.length > 0) {
  console.error(`packages under a licence keybroker does not take:\n${bad.join('\n')}`);
  process.exit(1);
}
console.log(`${n} packages, each under ${[...allowed].join(', ')}`);
