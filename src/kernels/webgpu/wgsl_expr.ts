// Expressions and access maps as WGSL. Repeated subexpressions become one `let` (CSE by
// structural key), so a value used twice (GELU's x, LayerNorm's centred x) is computed once.
import {AccessMap, isIdentity} from '../../fusion/access';
import {Expr, exprKey} from '../../fusion/expr';
import {opTables} from '../expr_ops';

/** An f32 literal (WGSL has no Infinity/NaN literals: those come from helper functions). */
export function f32(v: number): string {
  if (Number.isNaN(v)) return 'nan_()';
  if (v === Infinity) return 'inf_()';
  if (v === -Infinity) return '(-inf_())';
  if (Object.is(v, -0)) return '-0.0';
  const s = String(v);
  return /[.eE]/.test(s) ? `f32(${s})` : `${s}.0`;
}

/** i32 offset of the element at coordinates `coords` (WGSL i32 names, one per dim). */
export function offsetCode(m: AccessMap, coords: string[], linear?: string): string {
  if (linear != null && isIdentity(m)) return linear;
  const parts: string[] = m.offset !== 0 ? [String(m.offset)] : [];
  m.dims.forEach((terms, i) => {
    for (const t of terms) {
      let q = t.div === 1 ? coords[i] : `(${coords[i]} / ${t.div})`;
      if (t.mod !== 0) q = `(${q} % ${t.mod})`;
      parts.push(t.stride === 1 ? q : `${q} * ${t.stride}`);
    }
  });
  return parts.length ? parts.join(' + ') : '0';
}

/** Helper functions the generated expressions call; semantics follow tfjs-backend-webgpu / -cpu. */
export const WGSL_HELPERS = `
fn isnan_(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
// NaN and infinity must not be constant expressions in WGSL (they are rejected there): load the bits from a var.
fn nan_() -> f32 { var bits = 0x7fc00000u; return bitcast<f32>(bits); }
fn inf_() -> f32 { var bits = 0x7f800000u; return bitcast<f32>(bits); }
fn max_(a: f32, b: f32) -> f32 { if (isnan_(a) || isnan_(b)) { return nan_(); } return max(a, b); }
fn min_(a: f32, b: f32) -> f32 { if (isnan_(a) || isnan_(b)) { return nan_(); } return min(a, b); }
fn erf_(v: f32) -> f32 {
  // Abramowitz-Stegun 7.1.26, as tfjs computes erf.
  if (isnan_(v)) { return v; }
  let a = abs(v);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return select(y, -y, v < 0.0);
}
fn tanh_(v: f32) -> f32 {
  if (isnan_(v)) { return v; }
  let e = exp(-2.0 * abs(v));
  return sign(v) * (1.0 - e) / (1.0 + e);
}
fn sigmoid_(v: f32) -> f32 { if (isnan_(v)) { return v; } return 1.0 / (1.0 + exp(-v)); }
fn relu_(v: f32) -> f32 { return select(v, 0.0, v < 0.0); }  // NaN < 0 is false: NaN stays
fn relu6_(v: f32) -> f32 { return select(min(v, 6.0), 0.0, v < 0.0); }
fn elu_(v: f32) -> f32 { return select(exp(v) - 1.0, v, v >= 0.0); }
// Drivers differ on NaN inputs to builtins (SwiftShader's log(NaN) is 89): NaN in, NaN out.
fn log_(v: f32) -> f32 { if (v < 0.0 || isnan_(v)) { return nan_(); } if (v == 0.0) { return -inf_(); } return log(v); }  // log(0) is not -inf everywhere
fn sqrt_(v: f32) -> f32 { if (v < 0.0 || isnan_(v)) { return nan_(); } return sqrt(v); }
fn rsqrt_(v: f32) -> f32 { if (v < 0.0 || isnan_(v)) { return nan_(); } return inverseSqrt(v); }
fn exp_(v: f32) -> f32 { if (isnan_(v)) { return v; } return exp(v); }
fn pow_(a: f32, b: f32) -> f32 {
  // Like Math.pow: negative bases with integer exponents keep their sign.
  if (b == 0.0) { return 1.0; }
  if (a < 0.0) {
    if (floor(b) != b) { return nan_(); }
    let r = pow(-a, b);
    return select(r, -r, (abs(b) % 2.0) == 1.0);
  }
  return pow(a, b);
}
fn b2f(c: bool) -> f32 { return select(0.0, 1.0, c); }
`;

const {unary: UNARY, binary: BINARY} = opTables({abs: 'abs', zero: '0.0'});

/** Emits `let` statements for an expression; returns the name (or literal) of its value. */
export class ExprEmitter {
  readonly lines: string[] = [];
  private readonly names = new Map<string, string>();
  private n = 0;

  constructor(
      private readonly prefix: string,
      /** WGSL of element `offset` of input slot (converting i32 storage to f32). */
      private readonly load: (slot: number, offset: string) => string,
      private readonly coords: string[], private readonly linear: string|undefined,
      private readonly leaf: (e: Expr) => string|null = () => null) {}

  emit(e: Expr): string {
    const fixed = this.leaf(e);
    if (fixed != null) return fixed;
    if (e.k === 'c') return f32(e.v);
    const key = exprKey(e);
    const known = this.names.get(key);
    if (known != null) return known;
    let code: string;
    switch (e.k) {
      case 'in': code = this.load(e.slot, offsetCode(e.map, this.coords, this.linear)); break;
      case 'u': code = UNARY[e.op](this.emit(e.a)); break;
      case 'b': code = BINARY[e.op](this.emit(e.a), this.emit(e.b)); break;
      case 'sel': code = `select(${this.emit(e.b)}, ${this.emit(e.a)}, ${this.emit(e.c)} != 0.0)`; break;
      default: throw new Error(`no WGSL for leaf ${e.k}`);
    }
    const name = `${this.prefix}${this.n++}`;
    this.lines.push(`let ${name}: f32 = ${code};`);
    this.names.set(key, name);
    return name;
  }
}
