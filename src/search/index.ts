// The search (issue #7): device profile, stage 1 (analytical model), stage 2 (timing), tuning cache.
export {DEFAULT_BUDGET_MS, tuningBudgetMs, tuningCacheLocation} from './flags';
export {createGpuTimer, GpuTimer, medianTime, timePerRepetition, TimingMethod} from './gpu_timer';
export {AdapterInfoLike, deviceKey, DeviceProfile, measureDeviceProfile, MeasureOptions, syntheticProfile} from './device_profile';
export {BARRIER_FLOPS, Candidate, KernelEstimate, score, scoreKernels, Scored, stage1} from './cost_model';
export {
  AttentionDesc, AttentionMask, attentionCandidates, BLOCK_TILES, elementwiseKernel, GEMM_TILES, GemmDesc, gemmEpilogueCandidates,
  gemmKernel, GemmTile, LAYERNORM_ROWS, panelWidth, LayerNormDesc, layerNormCandidates, MAX_ACCUMULATORS, ROWWISE_KEY_BLOCK, ROWWISE_ROWS, SOFTMAX_FLOPS, tileKey,
} from './candidates';
export {Measurement, Runner, stage2, Stage2Options, Stage2Result, variants} from './stage2';
export {CACHE_VERSION, TuningCache, tuningCache, TuningCacheOptions, TuningRecord} from './tuning_cache';
export {CacheStore, defaultStore, fileStore, indexedDbStore} from './cache_stores';
export {
  DecideOptions, decide, Decision, matchRecord, rerunTuningTarget, searchGeneration, tune, TunedGroup, TuneOptions, TuneReport, TuneTarget,
  tuningActive, withCandidate,
} from './tuner';
export {AttentionDecision, attentionSignature, choiceOf, decideAttention, fusedAttentionCandidates} from './attention_choice';
