// 'stof''s CUDA base over the stand-in driver (cuda_fake_driver.mjs), for scripts that run the real
// backend, planner and CudaExecutor without a GPU (test/kernels/cuda_backend_check.mjs,
// bench/host_overhead.mjs).
import {loadTsc} from '../../scripts/load_tsc.mjs';
import {fakeCudaLibs} from './cuda_fake_driver.mjs';

const {setCudaProvider} = await loadTsc('src/backend/register.js');
const {CudaBase} = await loadTsc('src/backend/cuda_base.js');
const {CudaExecutor} = await loadTsc('src/kernels/cuda/executor.js');

/**
 * Makes every CUDA base 'stof' creates from now on run over a new stand-in driver. Returns the
 * state it keeps: `fake`, the stand-in of the base made last ({libs, log}), and `provided`, how
 * many were made. `launchChecks: false`: launches only count (the stand-in's check that every
 * pointer is live is a cost the real driver does not have, which a host-time benchmark must leave out).
 */
export function provideStandInCuda({launchChecks = true} = {}) {
  const state = {fake: null, provided: 0};
  setCudaProvider(() => {
    const fake = fakeCudaLibs();
    if (!launchChecks) fake.libs.driver.cuLaunchKernel = () => { fake.log.counts.launches++; return 0; };
    state.fake = fake;
    state.provided++;
    return new CudaBase(new CudaExecutor(fake.libs, {cacheDir: null}));
  });
  return state;
}
