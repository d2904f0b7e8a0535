// The planner's attention choice (row-wise or block-wise kernel, and its tiles) through the search:
// the tuning cache where tune() measured this shape on this device, else stage 1's cost model. The
// mask's tile occupancy is not known when the plan is made (the analysis runs on the device in the
// same submit), so the model sees every tile as occupied; both kernels skip at tile granularity,
// and stage 2 (tune()) times them on the real mask.
import type {AttentionChoice, AttentionShape} from '../fusion/planner';

import {attentionCandidates, ROWWISE_KEY_BLOCK} from './candidates';
import type {Candidate} from './cost_model';
import type {DeviceProfile} from './device_profile';
import type {Runner} from './stage2';
import {Decision, decide} from './tuner';

/** The tuning signature of an attention shape (it fixes every candidate's numbers). */
export function attentionSignature(s: AttentionShape): string {
  return `attention|${s.batch}|${s.Sq}|${s.Sk}|${s.D}|${s.Dv}|${s.masked ? s.maskInstances : 0}`;
}

/** The fused candidates (the planner always fuses attention: no S×S scores in memory). */
export function fusedAttentionCandidates(s: AttentionShape): Candidate[] {
  return attentionCandidates({
    B: s.batch, H: 1, Sq: s.Sq, Sk: s.Sk, D: s.D, Dv: s.Dv,
    mask: s.masked ? {instances: s.maskInstances, bytesPerElement: 4, analyzed: true} : undefined,
  }).filter(c => c.scheme !== 'attention-unfused');
}

/** The kernel parameters a candidate stands for. */
export function choiceOf(c: Candidate): AttentionChoice {
  if (c.scheme === 'attention-rowwise') {
    return {variant: 'rowwise', Br: c.params.rows, Bc: ROWWISE_KEY_BLOCK, threads: c.params.threads ?? c.space!.threads[0]};
  }
  return {variant: 'blockwise', Br: c.params.Br, Bc: c.params.Bc, threads: 2 * c.params.Br};
}

export interface AttentionDecision extends Decision {
  choice: AttentionChoice;
}

/** Decides an attention shape on a device; null when no fused candidate fits. */
export function decideAttention(s: AttentionShape, profile: DeviceProfile, run?: Runner): AttentionDecision|null {
  const d = decide(attentionSignature(s), fusedAttentionCandidates(s), {profile, run});
  return d && {...d, choice: choiceOf(d.candidate)};
}
