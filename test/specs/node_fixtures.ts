// Node only: what the model specs share. The fixture modules are ESM (.mjs) and stay outside the
// bundle: imported at run time from the source tree, found from the working directory (the
// repository root, also when a spec runs from build/test/). Through Function so that no compiler
// turns import() into require().
import * as path from 'node:path';
import {pathToFileURL} from 'node:url';

import * as tf from '@tensorflow/tfjs-core';
import * as tfconv from '@tensorflow/tfjs-converter';

export type ModelName = 'bert'|'gpt2'|'long';
export interface FixtureConfig {model: ModelName, vocab: number, hidden: number}
export interface Fixture {modelJson: unknown, weightData: ArrayBuffer, config: FixtureConfig}
export interface MakeFixturesModule {
  makeBert(config?: object): Fixture;
  makeGpt2(config?: object): Fixture;
  makeLongEncoder(config?: object): Fixture;
  writeFixture(dir: string, fixture: Fixture): string;
  makeRng(seed: number): {uniform(): number};
}
export interface LoadFixtureModule {
  loadFixture(dir: string, converter: typeof tfconv): Promise<tfconv.GraphModel>;
}

const importEsm = new Function('url', 'return import(url)') as (url: string) => Promise<unknown>;
export async function fixtureModule<T>(file: string): Promise<T> {
  return await importEsm(pathToFileURL(path.join(process.cwd(), 'test', 'fixtures', file)).href) as T;
}

/** Makes 'stof' the backend; marks the spec pending (false) when no such backend is registered. */
export async function useStof(): Promise<boolean> {
  if (tf.findBackendFactory('stof') == null) {
    pending("no backend named 'stof' is registered");
    return false;
  }
  expect(await tf.setBackend('stof')).toBe(true);
  return true;
}
