// The spelling of each expression op in the generated languages (WGSL, CUDA C). Both preludes
// define the same NaN-aware helpers (exp_, max_, b2f, ...), so only the absolute value and the
// float zero literal differ.
export interface OpSpelling {
  abs: string;   // the absolute-value function
  zero: string;  // the float literal 0
}

export function opTables(s: OpSpelling) {
  const unary: Record<string, (a: string) => string> = {
    neg: a => `(-(${a}))`, exp: a => `exp_(${a})`, log: a => `log_(${a})`, sqrt: a => `sqrt_(${a})`,
    rsqrt: a => `rsqrt_(${a})`, erf: a => `erf_(${a})`, tanh: a => `tanh_(${a})`, sigmoid: a => `sigmoid_(${a})`,
    relu: a => `relu_(${a})`, relu6: a => `relu6_(${a})`, elu: a => `elu_(${a})`, square: a => `(${a} * ${a})`,
    abs: a => `${s.abs}(${a})`, ne0: a => `b2f(${a} != ${s.zero})`,
  };
  const binary: Record<string, (a: string, b: string) => string> = {
    add: (a, b) => `(${a} + ${b})`, sub: (a, b) => `(${a} - ${b})`, mul: (a, b) => `(${a} * ${b})`,
    div: (a, b) => `(${a} / ${b})`, max: (a, b) => `max_(${a}, ${b})`, min: (a, b) => `min_(${a}, ${b})`,
    pow: (a, b) => `pow_(${a}, ${b})`, sqdiff: (a, b) => `((${a} - ${b}) * (${a} - ${b}))`,
    gt: (a, b) => `b2f(${a} > ${b})`, ge: (a, b) => `b2f(${a} >= ${b})`, lt: (a, b) => `b2f(${a} < ${b})`,
    le: (a, b) => `b2f(${a} <= ${b})`, eq: (a, b) => `b2f(${a} == ${b})`,
  };
  return {unary, binary};
}
