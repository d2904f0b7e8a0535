// What both entries export; importing it registers the 'stof' backend.
import {installModelReplay} from './backend/model_replay';
import {initializedBackend, registerStofBackend} from './backend/register';
import {StofBackend, StofBackendInfo} from './backend/stof_backend';

export {BASE_CHOICES, BaseChoice} from './backend/flags';
export {STOF_PRIORITY} from './backend/register';
export {BaseName, StofBackend, StofBackendInfo} from './backend/stof_backend';
export {attention, AttentionOptions} from './fusion/attention_op';
export * as masks from './kernels/sparse/masks';
export {explain, GroupReport, profile, ProfileReport} from './profile';
export {tune, TuneOptions, TuneReport, tuningCache} from './search/index';
export * as search from './search/index';
export {version} from './version';

/** The base and device of the initialized 'stof' backend; throws if it is not initialized. */
export function backendInfo(): StofBackendInfo {
  const backend = initializedBackend('stof');
  if (!(backend instanceof StofBackend)) {
    throw new Error(`tfjs-backend-stof: the 'stof' backend is not initialized; await tf.setBackend('stof') or tf.ready() first`);
  }
  return backend.info();
}

registerStofBackend();
installModelReplay();
