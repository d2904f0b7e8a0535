// Expressions as CUDA C: the same semantics as wgsl_expr.ts (and the CPU executor), so one plan gives
// the same numbers on every device. Repeated subexpressions become one `const float` (CSE by
// structural key). Access maps use the same index arithmetic as WGSL (C has the same syntax), so
// offsetCode is shared.
import {Expr, exprKey} from '../../fusion/expr';
import {opTables} from '../expr_ops';

export {offsetCode} from '../webgpu/wgsl_expr';

/** An f32 literal; Infinity and NaN come from their bit patterns (no math.h under NVRTC). */
export function f32c(v: number): string {
  if (Number.isNaN(v)) return 'STOF_NAN';
  if (v === Infinity) return 'STOF_INF';
  if (v === -Infinity) return '(-STOF_INF)';
  if (Object.is(v, -0)) return '-0.0f';
  const s = String(v);
  return /[.eE]/.test(s) ? `${s}f` : `${s}.0f`;
}

/**
 * Helper functions the generated expressions call. Every kernel is compiled without fast-math
 * (NVRTC's default: IEEE division and square root, no flush to zero), and each helper spells out
 * NaN/infinity handling as WGSL_HELPERS does, because that is what the CPU executor computes.
 */
export const CUDA_HELPERS = `
#define STOF_INF __int_as_float(0x7f800000)
#define STOF_NAN __int_as_float(0x7fc00000)
__device__ __forceinline__ bool isnan_(float v) { return (__float_as_uint(v) & 0x7fffffffu) > 0x7f800000u; }
__device__ __forceinline__ float max_(float a, float b) { return (isnan_(a) || isnan_(b)) ? STOF_NAN : fmaxf(a, b); }
__device__ __forceinline__ float min_(float a, float b) { return (isnan_(a) || isnan_(b)) ? STOF_NAN : fminf(a, b); }
__device__ __forceinline__ float exp_(float v) { return isnan_(v) ? v : expf(v); }
__device__ __forceinline__ float erf_(float v) {
  // Abramowitz-Stegun 7.1.26, as tfjs computes erf (not CUDA's erff).
  if (isnan_(v)) return v;
  float a = fabsf(v);
  float t = 1.0f / (1.0f + 0.3275911f * a);
  float y = 1.0f - (((((1.061405429f * t - 1.453152027f) * t) + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t * expf(-a * a);
  return v < 0.0f ? -y : y;
}
__device__ __forceinline__ float tanh_(float v) {
  if (isnan_(v)) return v;
  float e = expf(-2.0f * fabsf(v));
  float s = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
  return s * (1.0f - e) / (1.0f + e);
}
__device__ __forceinline__ float sigmoid_(float v) { return isnan_(v) ? v : 1.0f / (1.0f + expf(-v)); }
__device__ __forceinline__ float relu_(float v) { return v < 0.0f ? 0.0f : v; }  // NaN < 0 is false: NaN stays
__device__ __forceinline__ float relu6_(float v) { return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v); }  // fminf would turn NaN into 6
__device__ __forceinline__ float elu_(float v) { return v >= 0.0f ? v : expf(v) - 1.0f; }
__device__ __forceinline__ float log_(float v) { if (v < 0.0f || isnan_(v)) return STOF_NAN; if (v == 0.0f) return -STOF_INF; return logf(v); }
__device__ __forceinline__ float sqrt_(float v) { return (v < 0.0f || isnan_(v)) ? STOF_NAN : sqrtf(v); }
__device__ __forceinline__ float rsqrt_(float v) { return (v < 0.0f || isnan_(v)) ? STOF_NAN : 1.0f / sqrtf(v); }
__device__ __forceinline__ float pow_(float a, float b) {
  // Like Math.pow: negative bases with integer exponents keep their sign.
  if (b == 0.0f) return 1.0f;
  if (a < 0.0f) {
    if (floorf(b) != b) return STOF_NAN;
    float r = powf(-a, b);
    return fmodf(fabsf(b), 2.0f) == 1.0f ? -r : r;
  }
  return powf(a, b);
}
__device__ __forceinline__ float b2f(bool c) { return c ? 1.0f : 0.0f; }
`;

const {unary: UNARY, binary: BINARY} = opTables({abs: 'fabsf', zero: '0.0f'});

/** Emits `const float` statements for expressions; `emit` returns the name (or literal) of a value. */
export class CudaExprEmitter {
  readonly lines: string[] = [];
  private readonly names = new Map<string, string>();
  private n = 0;

  /**
   * @param load C of element `offset` of input slot, as float (int storage converted).
   * @param offset C of the offset of an access map at this emitter's coordinates.
   * @param leaf C of a leaf the caller binds ('acc', 'rv'), or null.
   */
  constructor(
      private readonly prefix: string, private readonly load: (slot: number, offset: string) => string,
      private readonly offset: (map: Extract<Expr, {k: 'in'}>['map']) => string,
      private readonly leaf: (e: Expr) => string|null = () => null) {}

  emit(e: Expr): string {
    const fixed = this.leaf(e);
    if (fixed != null) return fixed;
    if (e.k === 'c') return f32c(e.v);
    const key = exprKey(e);
    const known = this.names.get(key);
    if (known != null) return known;
    let code: string;
    switch (e.k) {
      case 'in': code = this.load(e.slot, this.offset(e.map)); break;
      case 'u': code = UNARY[e.op](this.emit(e.a)); break;
      case 'b': code = BINARY[e.op](this.emit(e.a), this.emit(e.b)); break;
      case 'sel': {
        const c = this.emit(e.c), a = this.emit(e.a), b = this.emit(e.b);
        code = `(${c} != 0.0f ? ${a} : ${b})`;
        break;
      }
      default: throw new Error(`cuda_expr: no CUDA C for leaf '${e.k}' here (the template binds no value for it)`);
    }
    const name = `${this.prefix}${this.n++}`;
    this.lines.push(`const float ${name} = ${code};`);
    this.names.set(key, name);
    return name;
  }
}
