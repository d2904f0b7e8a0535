// The tuning cache: per device (DeviceProfile.key) its measured profile and, per graph signature,
// the scheme and parameters that stage 2 measured best. In memory; persisted through a CacheStore
// (a JSON file in Node, IndexedDB in browsers). Versioned: text of another version or a shape this
// build does not know is ignored with one console.warn, never thrown on.
import type {DeviceProfile} from './device_profile';
import {CacheStore, defaultStore} from './cache_stores';

/** Bump when the meaning of records changes (cost model, kernel parameters): old files are then ignored. */
export const CACHE_VERSION = 1;
const FORMAT = 'tfjs-backend-stof/tuning-cache';

/** What was chosen for one graph signature on one device. */
export interface TuningRecord {
  /** Candidate.scheme of the choice. */
  scheme: string;
  /** Candidate.params of the choice, including the stage-2 parameters (Candidate.space) picked. */
  params: Record<string, number>;
  /** Measured ms (median) of the choice, where stage 2 timed it. */
  ms?: number;
  /** 'stage2': timed on the device; 'stage1': the model's pick, stored by a caller that wants it kept. */
  source: 'stage1'|'stage2';
  /** Date.now() when it was recorded. */
  time?: number;
}

interface DeviceEntry {
  profile?: DeviceProfile;
  entries: Record<string, TuningRecord>;
}

interface CacheFile {
  format: string;
  version: number;
  devices: Record<string, DeviceEntry>;
}

const isNum = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
const isObj = (x: unknown): x is Record<string, unknown> => x != null && typeof x === 'object' && !Array.isArray(x);

function validProfile(p: unknown): p is DeviceProfile {
  if (!isObj(p) || typeof p['key'] !== 'string') return false;
  for (const f of ['bandwidthGBs', 'cacheBandwidthGBs', 'fp32Gflops', 'dispatchUs', 'parallelism', 'maxWorkgroupStorage', 'maxInvocations']) {
    if (!isNum(p[f]) || (p[f] as number) <= 0) return false;
  }
  return true;
}

function validRecord(r: unknown): r is TuningRecord {
  return isObj(r) && typeof r['scheme'] === 'string' && isObj(r['params']) &&
      Object.values(r['params']).every(isNum) && (r['source'] === 'stage1' || r['source'] === 'stage2') &&
      (r['ms'] == null || isNum(r['ms'])) && (r['time'] == null || isNum(r['time']));
}

type Parsed = {ok: true, devices: Record<string, DeviceEntry>, dropped: number}|{ok: false, why: string};

/** Parses cache text; invalid records are dropped (counted), an invalid whole is refused with the reason. */
function parse(text: string): Parsed {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return {ok: false, why: `it is not JSON (${(e as Error).message})`};
  }
  if (!isObj(data) || data['format'] !== FORMAT) return {ok: false, why: `it is not a tuning cache (no format '${FORMAT}')`};
  if (data['version'] !== CACHE_VERSION) {
    return {ok: false, why: `it has version ${JSON.stringify(data['version'])} and this build reads version ${CACHE_VERSION}`};
  }
  if (!isObj(data['devices'])) return {ok: false, why: 'it has no devices'};
  const devices: Record<string, DeviceEntry> = {};
  let dropped = 0;
  for (const [key, d] of Object.entries(data['devices'])) {
    if (!isObj(d)) { dropped++; continue; }
    const entry: DeviceEntry = {entries: {}};
    if (d['profile'] != null) {
      if (validProfile(d['profile']) && d['profile'].key === key) entry.profile = d['profile'];
      else dropped++;
    }
    for (const [sig, r] of Object.entries(isObj(d['entries']) ? d['entries'] : {})) {
      if (validRecord(r)) entry.entries[sig] = r;
      else dropped++;
    }
    devices[key] = entry;
  }
  return {ok: true, devices, dropped};
}

export interface TuningCacheOptions {
  /** Where to persist: a CacheStore, null for memory only; left out: the store the STOF_TUNING_CACHE flag names. */
  store?: CacheStore|null;
}

export class TuningCache {
  private devices: Record<string, DeviceEntry> = {};
  private store: CacheStore|null|undefined;
  private loaded = false;
  private dirty = false;
  private gen = 0;

  constructor(opts: TuningCacheOptions = {}) {
    this.store = opts.store;
  }

  /** Changes whenever the contents change (set, import, load): plan caches can key on it. */
  get generation(): number {
    return this.gen;
  }

  /** The persistence in use (resolved from the flag on first use when none was given). */
  getStore(): CacheStore|null {
    if (this.store === undefined) this.store = defaultStore();
    return this.store;
  }

  get(deviceKey: string, signature: string): TuningRecord|undefined {
    this.loadLazily();
    return this.devices[deviceKey]?.entries[signature];
  }

  set(deviceKey: string, signature: string, record: TuningRecord): void {
    this.loadLazily();
    this.device(deviceKey).entries[signature] = {...record, params: {...record.params}, time: record.time ?? Date.now()};
    this.changed();
  }

  getProfile(deviceKey: string): DeviceProfile|undefined {
    this.loadLazily();
    return this.devices[deviceKey]?.profile;
  }

  setProfile(profile: DeviceProfile): void {
    this.loadLazily();
    this.device(profile.key).profile = {...profile};
    this.changed();
  }

  /** Number of stored records (all devices). */
  size(): number {
    return Object.values(this.devices).reduce((n, d) => n + Object.keys(d.entries).length, 0);
  }

  /** Forgets everything in memory (the persisted copy stays until the next save). */
  clear(): void {
    this.devices = {};
    this.changed();
  }

  /** Everything in memory as the versioned JSON text (the persisted format). */
  export(): string {
    this.loadLazily();
    const file: CacheFile = {format: FORMAT, version: CACHE_VERSION, devices: this.devices};
    return JSON.stringify(file, null, 1);
  }

  /**
   * Merges exported text into memory (its records win over ones in memory); returns the number of
   * records taken. Text of another version or not a cache: one console.warn, nothing taken.
   */
  import(json: string): number {
    this.loadLazily();
    return this.merge(json, 'import()', true);
  }

  /** Reads the persisted copy once (the first get/set does it too where the store reads synchronously). */
  async load(): Promise<void> {
    if (this.loaded) return;
    const store = this.getStore();
    const text = store == null ? null : await store.load();
    if (this.loaded) return;  // a synchronous lazy load won the race
    this.loaded = true;
    if (text != null) this.merge(text, store!.description, false);
  }

  /**
   * Writes memory to the store when anything changed: re-reads the store first and keeps what other
   * processes stored there (memory wins for the same device and signature).
   */
  async save(): Promise<void> {
    const store = this.getStore();
    if (store == null || !this.dirty) return;
    await this.load();
    const text = await store.load();
    const parsed = text == null ? null : parse(text);
    const merged: Record<string, DeviceEntry> = parsed?.ok ? parsed.devices : {};
    for (const [key, d] of Object.entries(this.devices)) {
      const m = merged[key] ??= {entries: {}};
      if (d.profile) m.profile = d.profile;
      Object.assign(m.entries, d.entries);
    }
    this.dirty = false;
    await store.save(JSON.stringify({format: FORMAT, version: CACHE_VERSION, devices: merged} as CacheFile, null, 1));
  }

  private device(key: string): DeviceEntry {
    return this.devices[key] ??= {entries: {}};
  }

  private changed() {
    this.dirty = true;
    this.gen++;
  }

  private loadLazily() {
    if (this.loaded) return;
    const store = this.getStore();
    if (store?.loadSync == null) return;  // asynchronous stores load through load()
    this.loaded = true;
    const text = store.loadSync();
    if (text != null) this.merge(text, store.description, false);
  }

  /** `override`: the text's records replace those in memory (import); else memory wins (a load after sets). */
  private merge(text: string, origin: string, override: boolean): number {
    const parsed = parse(text);
    if (!parsed.ok) {
      console.warn(`tfjs-backend-stof: ignoring the tuning cache ${origin}: ${parsed.why}.`);
      return 0;
    }
    if (parsed.dropped > 0) console.warn(`tfjs-backend-stof: tuning cache ${origin}: ignored ${parsed.dropped} invalid record(s).`);
    let taken = 0;
    for (const [key, d] of Object.entries(parsed.devices)) {
      const mine = this.device(key);
      if (d.profile && (override || mine.profile == null)) mine.profile = d.profile;
      for (const [sig, r] of Object.entries(d.entries)) {
        if (override || mine.entries[sig] == null) { mine.entries[sig] = r; taken++; }
      }
    }
    if (override) this.dirty = true;
    this.gen++;
    return taken;
  }
}

/** The process-wide cache (its store from the STOF_TUNING_CACHE flag, resolved on first use). */
export const tuningCache = new TuningCache();
