// Registers the one test environment of tfjs-core's op suite before the suite's modules load
// (ESM evaluates imports in order, so this module is imported ahead of the suite).
// globalThis.__stofCoreEnv = {name, backendName, isDataSync, flags}, set by the runner. Every test
// runs: the exclusion list is applied when the results are judged (scripts/test.mjs), so both runs
// see the same order of tests.
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';
import '@tensorflow/tfjs-core/dist/register_all_gradients';

import {findBackendFactory, removeBackend} from '@tensorflow/tfjs-core';
import {setTestEnvs, TestEnv} from '@tensorflow/tfjs-core/dist/jasmine_util';

type CoreEnvConfig = TestEnv;

const config = (globalThis as unknown as {__stofCoreEnv: CoreEnvConfig}).__stofCoreEnv;
if (config == null) throw new Error('core_env: globalThis.__stofCoreEnv is not set by the runner');

// A run on the base alone has no 'stof' registered: the base must fail an excluded test on its own.
if (config.backendName !== 'stof' && findBackendFactory('stof') != null) removeBackend('stof');

setTestEnvs([{name: config.name, backendName: config.backendName, isDataSync: config.isDataSync, flags: config.flags}]);
