// The tuning cache in IndexedDB (Chromium): round trip between caches, corrupt and non-text
// records, another version, and the STOF_TUNING_CACHE flag naming the database.
import * as tf from '@tensorflow/tfjs-core';

import {CACHE_VERSION, CacheStore, defaultStore, indexedDbStore, TuningCache} from '../../src/search';

const hasIndexedDb = typeof indexedDB !== 'undefined';

/** Writes a raw value into the store's record, bypassing the cache (to plant corrupt data). */
async function putRaw(dbName: string, value: unknown) {
  const db = await new Promise<IDBDatabase>((ok, fail) => {
    const r = indexedDB.open(dbName, 1);
    r.onupgradeneeded = () => r.result.createObjectStore('cache');
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
  await new Promise<void>((ok, fail) => {
    const tx = db.transaction('cache', 'readwrite');
    tx.objectStore('cache').put(value, 'tuning');
    tx.oncomplete = () => ok();
    tx.onerror = () => fail(tx.error);
  });
  db.close();
}

function deleteDb(name: string): Promise<void> {
  return new Promise(ok => {
    const r = indexedDB.deleteDatabase(name);
    r.onsuccess = r.onerror = r.onblocked = () => ok();
  });
}

if (hasIndexedDb) {
  describe('search: tuning cache in IndexedDB', () => {
    const record = {scheme: 'attention-rowwise', params: {rows: 8, threads: 64}, ms: 0.1, source: 'stage2' as const};
    const stores: CacheStore[] = [];
    let dbName: string;
    let warn: jasmine.Spy;
    const store = () => {
      const s = indexedDbStore(dbName)!;
      stores.push(s);
      return s;
    };

    beforeEach(() => {
      dbName = `stof-spec-${Date.now()}-${Math.random().toString(36).slice(2)}`;
      warn = spyOn(console, 'warn');
    });
    afterEach(async () => {
      stores.splice(0).forEach(s => s.close?.());
      tf.env().set('STOF_TUNING_CACHE', '');
      await deleteDb(dbName);
    });

    it('round-trips between caches (separate connections)', async () => {
      const a = new TuningCache({store: store()});
      await a.load();
      a.set('gpu', 'sig', record);
      await a.save();
      const b = new TuningCache({store: store()});
      expect(b.get('gpu', 'sig')).toBeUndefined();  // IndexedDB is read by load(), not on first use
      await b.load();
      expect(b.get('gpu', 'sig')).toEqual(jasmine.objectContaining(record));
      // Saves merge: a second cache's record joins the first's.
      b.set('gpu', 'sig2', record);
      await b.save();
      const c = new TuningCache({store: store()});
      await c.load();
      expect(c.size()).toBe(2);
      expect(warn).not.toHaveBeenCalled();
    });

    it('ignores corrupt text with one warning, and a save rewrites it', async () => {
      await putRaw(dbName, '{"format": "tfjs-backend-stof/tuning-cache", "vers');
      const a = new TuningCache({store: store()});
      await a.load();
      expect(a.size()).toBe(0);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.calls.argsFor(0)[0])).toContain(dbName);
      a.set('gpu', 'sig', record);
      await a.save();
      const b = new TuningCache({store: store()});
      await b.load();
      expect(b.get('gpu', 'sig')).toBeDefined();
      expect(warn).toHaveBeenCalledTimes(1);
    });

    it('ignores a record that is not text (another writer) with one warning', async () => {
      await putRaw(dbName, {some: 'object', version: CACHE_VERSION});
      const a = new TuningCache({store: store()});
      await a.load();
      expect(a.size()).toBe(0);
      expect(warn).toHaveBeenCalledTimes(1);
    });

    it('ignores text of another version with one warning', async () => {
      const a = new TuningCache({store: null});
      a.set('gpu', 'sig', record);
      const text = JSON.parse(a.export());
      text.version = CACHE_VERSION + 1;
      await putRaw(dbName, JSON.stringify(text));
      const b = new TuningCache({store: store()});
      await b.load();
      expect(b.get('gpu', 'sig')).toBeUndefined();
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.calls.argsFor(0)[0])).toContain(`version ${CACHE_VERSION + 1}`);
    });

    it('uses the database the STOF_TUNING_CACHE flag names; "off" keeps memory only', async () => {
      tf.env().set('STOF_TUNING_CACHE', dbName);
      const s = defaultStore()!;
      stores.push(s);
      expect(s.description).toContain(dbName);
      const a = new TuningCache();
      stores.push(a.getStore()!);
      await a.load();
      a.set('gpu', 'sig', record);
      await a.save();
      const b = new TuningCache({store: store()});
      await b.load();
      expect(b.get('gpu', 'sig')).toBeDefined();
      tf.env().set('STOF_TUNING_CACHE', 'off');
      expect(defaultStore()).toBeNull();
    });
  });
}
