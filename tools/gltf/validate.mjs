// Validates glTF/GLB files with the Khronos glTF validator and prints one JSON line per file:
// {"file", "errors", "warnings", "infos", "messages"}. Exits 1 when any file has an error or a
// warning (the tests of output3d.glb require none), 2 on bad usage.
//
// Usage: node tools/gltf/validate.mjs FILE...
import { readFileSync } from "node:fs";
import validator from "gltf-validator";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE...");
  process.exit(2);
}
let bad = false;
for (const file of files) {
  const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), {
    uri: file,
    // The texture is embedded; nothing external to load.
    externalResourceFunction: () => Promise.reject(new Error("no external resources")),
  });
  const issues = report.issues;
  const messages = issues.messages.map((m) => `${m.severity} ${m.code} ${m.pointer ?? ""}: ${m.message}`);
  console.log(JSON.stringify({
    file,
    errors: issues.numErrors,
    warnings: issues.numWarnings,
    infos: issues.numInfos,
    messages,
  }));
  bad ||= issues.numErrors > 0 || issues.numWarnings > 0;
}
process.exit(bad ? 1 : 0);
