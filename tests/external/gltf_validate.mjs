// Validate one .gltf/.glb file with the Khronos glTF validator and print its JSON report.
// Usage: node gltf_validate.mjs FILE   (install first: npm ci --prefix tests/external)
// Exit status: 0 when the report was printed (check numErrors in it), 2 on bad usage or I/O.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { validateBytes } from 'gltf-validator';

const file = process.argv[2];
if (!file) {
  console.error('usage: node gltf_validate.mjs FILE');
  process.exit(2);
}

try {
  const data = await readFile(file);
  const report = await validateBytes(new Uint8Array(data), {
    uri: path.basename(file),
    maxIssues: 100,
    externalResourceFunction: (uri) =>
      readFile(path.resolve(path.dirname(file), decodeURIComponent(uri))).then((b) => new Uint8Array(b)),
  });
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
} catch (error) {
  console.error(`cannot validate ${file}: ${error}`);
  process.exit(2);
}
