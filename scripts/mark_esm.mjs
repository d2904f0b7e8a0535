// tsc emits ES modules into build/tsc; the package itself is CommonJS, so mark that folder as ESM.
import fs from 'node:fs';
fs.mkdirSync('build/tsc', {recursive: true});
fs.writeFileSync('build/tsc/package.json', '{"type": "module"}\n');
