#!/usr/bin/env python3
"""Writes the conformance vectors of spec/sampler-api.md from first principles.

It uses exact arithmetic where it matters (powers of two via frexp) and math.log2 elsewhere,
keeping only values far from any bucket boundary, so the expected answers do not depend on the
implementation under test. Run: python3 spec/vectors/generate.py
"""
import json
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def index(value, scale):
    """Bucket i holds (b^i, b^(i+1)], b = 2^(2^-scale)."""
    m, e = math.frexp(value)  # value = m * 2^e, 0.5 <= m < 1
    if m == 0.5:  # exact power of two: 2^(e-1) closes the bucket below it
        exp = e - 1
        if scale <= 0:
            return ((exp) >> -scale) - 1 if exp % (1 << -scale) == 0 else exp >> -scale
        return (exp << scale) - 1
    return math.ceil(math.log2(value) * 2.0 ** scale) - 1


def far_from_boundary(value, scale):
    x = math.log2(value) * 2.0 ** scale
    return abs(x - round(x)) > 1e-6


def lower(i, scale):
    return 2.0 ** (i / 2.0 ** scale)


def bucket_vectors():
    rng = random.Random(7)
    cases = []
    for scale in [-4, -1, 0, 1, 3, 4, 5, 8]:
        for e in range(-30, 31, 3):
            v = 2.0 ** e
            if scale < 0 and e % (1 << -scale) != 0:
                continue
            cases.append({"scale": scale, "value": v, "index": index(v, scale)})
        n = 0
        while n < 25:
            v = 10 ** rng.uniform(-9, 9)
            if far_from_boundary(v, scale):
                cases.append({"scale": scale, "value": v, "index": index(v, scale)})
                n += 1
    return cases


def quantile(values, scale, q):
    """The estimate the spec defines: nearest-rank bucket, point 2·lo·hi/(lo+hi), clamped."""
    s = sorted(values)
    n = len(s)
    if q <= 0:
        return s[0]
    if q >= 1:
        return s[-1]
    rank = min(max(math.ceil(q * n), 1), n)
    x = s[rank - 1]
    if x == 0:
        return 0.0
    i = index(x, scale)
    lo, hi = lower(i, scale), lower(i + 1, scale)
    est = 2 * lo * hi / (lo + hi)
    return min(max(est, s[0]), s[-1])


def quantile_vectors():
    rng = random.Random(11)
    out = []
    for scale in [0, 3, 4, 5]:
        for shape in ["uniform", "lognormal", "bimodal"]:
            values = []
            while len(values) < 200:
                v = (rng.uniform(0.001, 2.0) if shape == "uniform" else
                     rng.lognormvariate(-4, 1.5) if shape == "lognormal" else
                     rng.choice([rng.uniform(0.001, 0.01), rng.uniform(1, 3)]))
                if far_from_boundary(v, scale):
                    values.append(v)
            qs = [0.0, 0.1, 0.5, 0.9, 0.99, 1.0]
            out.append({
                "scale": scale,
                "shape": shape,
                "values": values,
                "count": len(values),
                "quantiles": [{"q": q, "estimate": quantile(values, scale, q),
                               "exact": sorted(values)[min(max(math.ceil(q * len(values)), 1), len(values)) - 1]}
                              for q in qs],
                "relative_error_bound": (2 ** 2.0 ** -scale - 1) / (2 ** 2.0 ** -scale + 1),
            })
    return out


def name_vectors():
    return {
        "valid_names": ["a", "http.server.duration", "process.memory.rss", "db.pool_2.idle",
                        "system.cpu.load_average.1m"],
        "invalid_names": ["", ".a", "a.", "a..b", "Http.requests", "9lives", "a-b", "a b", "a/b",
                          "a._b", "x" * 256],
        "valid_label_keys": ["route", "_private", "status_code", "k9"],
        "invalid_label_keys": ["", "Route", "9k", "a.b", "a-b", "__reserved"],
    }


def main():
    files = {
        "buckets.json": {"description": "value -> bucket index; bucket i holds (b^i, b^(i+1)], b = 2^(2^-scale)",
                         "cases": bucket_vectors()},
        "quantiles.json": {"description": "values -> quantile estimates (nearest rank; estimate 2*lo*hi/(lo+hi) of the rank's bucket, clamped to [min, max]; q=0 is min, q=1 is max)",
                           "cases": quantile_vectors()},
        "names.json": name_vectors(),
    }
    for name, body in files.items():
        with open(os.path.join(HERE, name), "w") as f:
            json.dump(body, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
