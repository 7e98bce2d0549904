#!/usr/bin/env python3
"""Writes spec/vectors/bucket_boundaries.json: floats next to bucket boundaries, and the
boundaries themselves where they are floats, with their bucket index by exact arithmetic.

Bucket i holds (b^i, b^(i+1)], b = 2^(2^-scale). Every expected index comes from
`exact_index`, which compares rationals (`fractions.Fraction`) and never rounds: v <= b^m is
decided as v^(2^scale) <= 2^m (scale >= 0) or v <= 2^(m * 2^-scale) (scale < 0).

Covered at every scale from MIN_SCALE to MAX_SCALE:
  - at scales above 0, every boundary 2^(k / 2^scale) of an octave (k = 0 .. 2^scale - 1), each
    in several octaves (the lowest and highest normal ones, 2^0, and seeded random ones): the
    nearest float below the boundary and the nearest float above it, and the boundary itself
    where it is a float (k = 0, a power of two);
  - at scales 0 and below, boundaries 2^(i * 2^-scale) (all of them where few, else the
    extremes and a seeded random sample): the boundary and its two neighbouring floats;
  - at every scale, the largest float and its neighbour below, the smallest normal and its
    neighbour above.
Subnormals are listed apart: the spec counts them as the smallest normal, 2^-1022 (the OTLP data
model allows it), and gives their exact index beside.

Deterministic (seeded). Run: python3 spec/vectors/gen_bucket_boundaries.py
With --rust-table it prints instead the boundary table of sampler-api/src/distribution.rs.
"""
import json
import math
import os
import random
import sys
from fractions import Fraction

HERE = os.path.dirname(os.path.abspath(__file__))
MIN_SCALE, MAX_SCALE = -10, 8
MIN_EXP, MAX_EXP = -1022, 1023  # normal binary exponents
SMALLEST_NORMAL = 2.0 ** MIN_EXP


def pow2(t):
    return Fraction(2) ** t


def least_pow2_at_or_above(q):
    """The least integer t with q <= 2^t, for a rational q > 0."""
    t = q.numerator.bit_length() - q.denominator.bit_length()
    while pow2(t) < q:
        t += 1
    while pow2(t - 1) >= q:
        t -= 1
    return t


def exact_index(value, scale):
    """The bucket index of a float value > 0: the i with b^i < value <= b^(i+1)."""
    v = Fraction(value)  # exact: every float is a dyadic rational
    assert v > 0
    if scale >= 0:
        # value <= b^m  <=>  value^(2^scale) <= 2^m; the least such m closes bucket m - 1
        return least_pow2_at_or_above(v ** (2 ** scale)) - 1
    # value <= b^m  <=>  value <= 2^(m * w), w = 2^-scale: the least m with m * w >= t
    t = least_pow2_at_or_above(v)
    w = 2 ** -scale
    return -((-t) // w) - 1


def make_float(mant, exp):
    """The float mant * 2^(exp - 52), mant a 53-bit integer; checked exact."""
    assert 2 ** 52 <= mant < 2 ** 53
    x = math.ldexp(mant, exp - 52)
    assert Fraction(x) == Fraction(mant) * pow2(exp - 52)
    return x


def floor_mantissa(k, n):
    """floor(2^52 * 2^(k/n)) for 0 <= k < n, n a power of two: the largest integer x with
    x^n <= 2^(52n + k), found by bisection with exact integer powers."""
    target = 2 ** (52 * n + k)
    lo, hi = 2 ** 52, 2 ** 53  # lo^n <= target < hi^n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mid ** n <= target:
            lo = mid
        else:
            hi = mid
    return lo


def next_up(x):
    return math.nextafter(x, math.inf)


def next_down(x):
    return math.nextafter(x, 0.0)


def positive_scale_values(scale, rng):
    n = 2 ** scale
    out = []
    for k in range(n):
        exps = [MIN_EXP, -1, 0, MAX_EXP] + rng.sample(range(MIN_EXP + 1, MAX_EXP), 3)
        for e in exps:
            if k == 0:
                b = 2.0 ** e
                out += [b, next_up(b)] + ([next_down(b)] if e > MIN_EXP else [])
            else:
                m = floor_mantissa(k, n)
                below, above = make_float(m, e), make_float(m + 1, e)
                # they straddle the boundary 2^(e + k/n), which no float equals (k/n is not an
                # integer, so it is irrational)
                assert exact_index(below, scale) == e * n + k - 1, (below, scale)
                assert exact_index(above, scale) == e * n + k, (above, scale)
                out += [below, above]
    return out


def low_scale_values(scale, rng):
    w = 2 ** -scale
    first, last = -(-MIN_EXP // w), MAX_EXP // w  # boundaries 2^(i*w) that are normal floats
    idx = list(range(first, last + 1))
    if len(idx) > 48:
        keep = {first, first + 1, -1, 0, 1, last - 1, last}
        keep |= set(rng.sample(idx, 48 - len(keep)))
        idx = sorted(keep)
    out = []
    for i in idx:
        b = 2.0 ** (i * w)
        assert exact_index(b, scale) == i - 1
        out += [b, next_up(b)] + ([next_down(b)] if i * w > MIN_EXP else [])
    return out


def vectors():
    rng = random.Random(2029)
    scales = []
    total = 0
    for scale in range(MIN_SCALE, MAX_SCALE + 1):
        values = positive_scale_values(scale, rng) if scale > 0 else low_scale_values(scale, rng)
        largest = next_down(math.inf)
        values += [SMALLEST_NORMAL, next_up(SMALLEST_NORMAL), largest, next_down(largest)]
        if scale == 2:
            values.append(4.451668555924561e-23)  # the example of issue 9: bucket -298
        values = sorted(set(values))
        assert all(SMALLEST_NORMAL <= v < math.inf for v in values)
        cases = [[v, exact_index(v, scale)] for v in values]
        total += len(cases)
        scales.append({"scale": scale, "cases": cases})
    subnormal_values = [math.ulp(0.0), 2.0 ** -1074 * 3, 2.0 ** -1050, 2.0 ** -1023,
                        next_down(SMALLEST_NORMAL)]
    subnormals = []
    for scale in range(MIN_SCALE, MAX_SCALE + 1):
        for v in subnormal_values:
            subnormals.append({"scale": scale, "value": v,
                               "index": exact_index(SMALLEST_NORMAL, scale),
                               "exact_index": exact_index(v, scale)})
    return {
        "description": "value -> bucket index next to bucket boundaries, by exact rational "
                       "arithmetic; bucket i holds (b^i, b^(i+1)], b = 2^(2^-scale). Each scale "
                       "lists [value, index] pairs. Subnormals count as the smallest normal "
                       "2^-1022 ('index'); 'exact_index' is their exact bucket, for reference.",
        "generator": "gen_bucket_boundaries.py",
        "count": total,
        "scales": scales,
        "subnormals": subnormals,
    }


def dump(body):
    """JSON with one [value, index] pair per line (floats as Python's shortest round trip)."""
    lines = ["{"]
    for key in ["description", "generator", "count"]:
        lines.append(f" {json.dumps(key)}: {json.dumps(body[key])},")
    lines.append(' "scales": [')
    for si, s in enumerate(body["scales"]):
        lines.append(f'  {{"scale": {s["scale"]}, "cases": [')
        for ci, (v, i) in enumerate(s["cases"]):
            comma = "," if ci + 1 < len(s["cases"]) else ""
            lines.append(f"   [{json.dumps(v)}, {i}]{comma}")
        lines.append("  ]}" + ("," if si + 1 < len(body["scales"]) else ""))
    lines.append(" ],")
    lines.append(' "subnormals": [')
    for k, c in enumerate(body["subnormals"]):
        comma = "," if k + 1 < len(body["subnormals"]) else ""
        lines.append(f"  {json.dumps(c)}{comma}")
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def rust_table():
    """The mantissa bits of the nearest float at or below each boundary 2^(j/256), j < 256."""
    n = 2 ** MAX_SCALE
    words = [floor_mantissa(j, n) - 2 ** 52 for j in range(n)]
    print(f"const BOUNDARY_MANTISSAS: [u64; {n}] = [")
    for row in range(0, n, 4):
        print("    " + " ".join(f"0x{w:013x}," for w in words[row:row + 4]))
    print("];")


def main():
    if sys.argv[1:] == ["--rust-table"]:
        rust_table()
        return
    body = vectors()
    text = dump(body)
    assert json.loads(text) == json.loads(json.dumps(body))
    with open(os.path.join(HERE, "bucket_boundaries.json"), "w") as f:
        f.write(text)
    print(f"bucket_boundaries.json: {body['count']} values, {len(body['subnormals'])} subnormal cases")


if __name__ == "__main__":
    main()
