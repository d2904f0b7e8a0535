// Where a TuningCache persists its JSON text: a file in Node (written atomically: temp file, then
// rename), IndexedDB in browsers. Stores never throw: a failure is one console.warn and the cache
// stays in memory. No static import of Node modules, so browser bundles take this file as it is.
import {tuningCacheLocation} from './flags';

/** Persistence of the cache's JSON text. */
export interface CacheStore {
  /** For messages: the file path or the database name. */
  readonly description: string;
  /** Synchronous read where the medium allows it (files), so the cache can load lazily on first use. */
  loadSync?(): string|null;
  /** The stored text, or null when there is none (or it cannot be read: warned). */
  load(): Promise<string|null>;
  /** Replaces the stored text. */
  save(text: string): Promise<void>;
  /** Releases the medium (an open database connection); the store reopens it when used again. */
  close?(): void;
}

type Fs = typeof import('fs');
type PathModule = typeof import('path');
type Os = typeof import('os');

/** Node's built-in modules without a static import (process.getBuiltinModule: Node >= 20.16; require: CommonJS). */
function nodeModule<T>(name: string): T|null {
  const proc = (globalThis as unknown as {process?: {versions?: {node?: string}, getBuiltinModule?: (n: string) => unknown}}).process;
  if (proc?.versions?.node == null) return null;
  try {
    if (typeof proc.getBuiltinModule === 'function') return proc.getBuiltinModule(name) as T;
    if (typeof require === 'function') return require(name) as T;
  } catch {
    // fall through: not available in this runtime
  }
  return null;
}

export function isNode(): boolean {
  return nodeModule<Fs>('fs') != null;
}

const warned = new Set<string>();
function warnOnce(message: string) {
  if (warned.has(message)) return;
  warned.add(message);
  console.warn(`tfjs-backend-stof: ${message}`);
}

/** The JSON file at `path` (Node). Null where Node's fs is not reachable. */
export function fileStore(path: string): CacheStore|null {
  const fs = nodeModule<Fs>('fs'), pathMod = nodeModule<PathModule>('path');
  if (fs == null || pathMod == null) return null;
  const read = (): string|null => {
    try {
      return fs.readFileSync(path, 'utf8');
    } catch (e) {
      // No file (or no folder) yet is the normal first run; anything else is worth a warning.
      if (!['ENOENT', 'ENOTDIR'].includes((e as {code?: string}).code ?? '')) warnOnce(`tuning cache ${path} cannot be read (${(e as Error).message}); tuning results stay in memory`);
      return null;
    }
  };
  return {
    description: path,
    loadSync: read,
    load: async () => read(),
    async save(text) {
      // Readers see the old file or the new one, never half of one: write a temp file beside it, rename.
      const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
      try {
        fs.mkdirSync(pathMod.dirname(path), {recursive: true});
        fs.writeFileSync(tmp, text);
        fs.renameSync(tmp, path);
      } catch (e) {
        try { fs.rmSync(tmp, {force: true}); } catch { /* nothing left to clean */ }
        warnOnce(`tuning cache ${path} cannot be written (${(e as Error).message}); tuning results stay in memory`);
      }
    },
  };
}

const IDB_STORE = 'cache';
const IDB_KEY = 'tuning';

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((ok, fail) => {
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
}

/** One record (the cache's JSON text) in the IndexedDB database `dbName`. Null without IndexedDB. */
export function indexedDbStore(dbName = 'tfjs-backend-stof'): CacheStore|null {
  const idb = (globalThis as unknown as {indexedDB?: IDBFactory}).indexedDB;
  if (idb == null) return null;
  let db: Promise<IDBDatabase>|null = null;
  const open = () => db ??= new Promise<IDBDatabase>((ok, fail) => {
    const r = idb.open(dbName, 1);
    r.onupgradeneeded = () => { if (!r.result.objectStoreNames.contains(IDB_STORE)) r.result.createObjectStore(IDB_STORE); };
    r.onsuccess = () => {
      r.result.onversionchange = () => { r.result.close(); db = null; };  // never block another tab's upgrade or delete
      ok(r.result);
    };
    r.onerror = () => fail(r.error);
    r.onblocked = () => fail(new Error('the database is blocked by another connection'));
  });
  return {
    description: `IndexedDB '${dbName}'`,
    async load() {
      try {
        const value = await request((await open()).transaction(IDB_STORE, 'readonly').objectStore(IDB_STORE).get(IDB_KEY));
        if (value == null) return null;
        // Anything but text is handed on as text, so the cache's validation judges it (and warns).
        return typeof value === 'string' ? value : String(JSON.stringify(value));
      } catch (e) {
        db = null;
        warnOnce(`tuning cache in IndexedDB '${dbName}' cannot be read (${(e as Error)?.message}); tuning results stay in memory`);
        return null;
      }
    },
    async save(text) {
      try {
        const tx = (await open()).transaction(IDB_STORE, 'readwrite');
        tx.objectStore(IDB_STORE).put(text, IDB_KEY);
        await new Promise<void>((ok, fail) => {
          tx.oncomplete = () => ok();
          tx.onerror = () => fail(tx.error);
          tx.onabort = () => fail(tx.error ?? new Error('aborted'));
        });
      } catch (e) {
        db = null;
        warnOnce(`tuning cache in IndexedDB '${dbName}' cannot be written (${(e as Error)?.message}); tuning results stay in memory`);
      }
    },
    close() {
      const pending = db;
      db = null;
      pending?.then(d => d.close(), () => {});
    },
  };
}

/** Node's default cache file: $XDG_CACHE_HOME or ~/.cache, then tfjs-backend-stof/tuning.json. */
function defaultFilePath(): string|null {
  const pathMod = nodeModule<PathModule>('path'), os = nodeModule<Os>('os');
  if (pathMod == null || os == null) return null;
  const base = process.env['XDG_CACHE_HOME'] || pathMod.join(os.homedir(), '.cache');
  return pathMod.join(base, 'tfjs-backend-stof', 'tuning.json');
}

/** The store that the STOF_TUNING_CACHE flag names for this runtime (null: memory only). */
export function defaultStore(): CacheStore|null {
  const where = tuningCacheLocation();
  if (where === 'off') return null;
  if (isNode()) {
    const path = where || defaultFilePath();
    return path ? fileStore(path) : null;
  }
  return indexedDbStore(where || undefined);
}
