import * as fs from 'fs';
import * as path from 'path';

/** Writes `files` (paths relative to `root`, folders made as needed) and returns `root`. */
export function writeFiles(root: string, files: Readonly<Record<string, string | Uint8Array>>): string {
  for (const [file, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), content);
  }
  return root;
}
