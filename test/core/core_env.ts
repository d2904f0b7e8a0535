// Registers the one test environment of tfjs-core's op suite before the suite's modules load
// (ESM evaluates imports in order, so this module is imported ahead of the suite).
// globalThis.__stofCoreEnv = {name, backendName, isDataSync, flags, includeExcluded}, set by the runner.
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';
import '@tensorflow/tfjs-core/dist/register_all_gradients';

import {findBackendFactory, removeBackend} from '@tensorflow/tfjs-core';
import {setTestEnvs, setupTestFilters, TestEnv} from '@tensorflow/tfjs-core/dist/jasmine_util';

import {isExcluded} from './exclusions';

interface CoreEnvConfig extends TestEnv {
  /** Run only the excluded tests (to check that the base fails them too). */
  onlyExcluded?: boolean;
  /** Environment key of the exclusion list. */
  exclusionEnv: string;
}

const config = (globalThis as unknown as {__stofCoreEnv: CoreEnvConfig}).__stofCoreEnv;
if (config == null) throw new Error('core_env: globalThis.__stofCoreEnv is not set by the runner');

// A run on the base alone has no 'stof' registered: the base must fail an excluded test on its own.
if (config.backendName !== 'stof' && findBackendFactory('stof') != null) removeBackend('stof');

setTestEnvs([{name: config.name, backendName: config.backendName, isDataSync: config.isDataSync, flags: config.flags}]);
setupTestFilters([], (name: string) => isExcluded(name, config.exclusionEnv) === !!config.onlyExcluded);
