//! The conformance vectors of `spec/vectors/`: bucket indexes, quantile estimates and names.

use std::collections::BTreeMap;

use sampler_api::distribution::{bucket_index, MAX_SCALE, MIN_SCALE};
use sampler_api::{
    validate_label_key, validate_name, Descriptor, Distribution, FamilyOptions, Registry,
};
use serde_json::Value as Json;

fn load(name: &str) -> Json {
    let path = format!("{}/../spec/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

#[test]
fn bucket_indexes() {
    let v = load("buckets.json");
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() > 100);
    for c in cases {
        let scale = c["scale"].as_i64().unwrap() as i8;
        let value = c["value"].as_f64().unwrap();
        let want = c["index"].as_i64().unwrap() as i32;
        assert_eq!(
            bucket_index(value, scale),
            want,
            "value {value} at scale {scale}"
        );
    }
}

/// `bucket_boundaries.json`: the nearest floats on both sides of bucket boundaries, and the
/// boundaries that are floats, at every scale, with indexes from exact rational arithmetic.
#[test]
fn bucket_boundaries() {
    let v = load("bucket_boundaries.json");
    let mut total = 0;
    let mut wrong: BTreeMap<i8, (usize, usize)> = BTreeMap::new();
    let mut first_wrong = Vec::new();
    let mut scales = Vec::new();
    let mut by_scale = Vec::new();
    for s in v["scales"].as_array().unwrap() {
        let scale = s["scale"].as_i64().unwrap() as i8;
        scales.push(scale);
        let cases: Vec<(f64, i32)> = s["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c[0].as_f64().unwrap(), c[1].as_i64().unwrap() as i32))
            .collect();
        assert!(!cases.is_empty());
        for &(value, want) in &cases {
            assert!(value.is_normal() && value > 0.0);
            let got = bucket_index(value, scale);
            let w = wrong.entry(scale).or_default();
            w.1 += 1;
            if got != want {
                w.0 += 1;
                if first_wrong.len() < 5 {
                    first_wrong.push(format!("{value:e} at scale {scale}: {got}, want {want}"));
                }
            }
        }
        total += cases.len();
        by_scale.push((scale, cases));
    }
    let expected_scales: Vec<i8> = (MIN_SCALE..=MAX_SCALE).collect();
    assert_eq!(scales, expected_scales);
    assert_eq!(total as u64, v["count"].as_u64().unwrap());
    let off: Vec<String> = wrong
        .iter()
        .filter(|(_, (bad, _))| *bad > 0)
        .map(|(s, (bad, all))| format!("scale {s}: {bad} of {all}"))
        .collect();
    assert!(
        off.is_empty(),
        "bucket_index off: {}; e.g. {}",
        off.join(", "),
        first_wrong.join("; ")
    );
    for (scale, cases) in &by_scale {
        if (0..=MAX_SCALE).contains(scale) {
            record_paths_agree(*scale, cases);
        }
    }

    // Subnormals count as the smallest normal, 2^-1022.
    for c in v["subnormals"].as_array().unwrap() {
        let scale = c["scale"].as_i64().unwrap() as i8;
        let value = c["value"].as_f64().unwrap();
        assert!(value > 0.0 && !value.is_normal());
        let want = c["index"].as_i64().unwrap() as i32;
        assert_eq!(
            bucket_index(value, scale),
            want,
            "{value:e} at scale {scale}"
        );
        assert_eq!(want, bucket_index(f64::MIN_POSITIVE, scale));
    }
}

/// The values of `cases` land in the same buckets through `Distribution::record` and through a
/// timing instrument's record path (within the range a timing keeps apart, 2^-64 to 2^64).
/// Values are split by the parity of their index, so a value one bucket off shows as a count
/// where its half of the cases has none.
fn record_paths_agree(scale: i8, cases: &[(f64, i32)]) {
    static T: Descriptor = Descriptor::timing("vectors.boundaries", "s", "boundary vectors");
    let registry = Registry::new();
    let family =
        registry.timing_family_with(&T, &["parity"], FamilyOptions::default().scale(scale));
    let timings = [family.get(&["even"]), family.get(&["odd"])];
    let mut dists = [Distribution::new(scale), Distribution::new(scale)];
    let mut want_all: [BTreeMap<i32, u64>; 2] = Default::default();
    let mut want_timing: [BTreeMap<i32, u64>; 2] = Default::default();
    let range = 64i32 << scale;
    for &(value, index) in cases {
        let p = index.rem_euclid(2) as usize;
        dists[p].record(value);
        *want_all[p].entry(index).or_default() += 1;
        if (-range..range).contains(&index) {
            timings[p].record(value);
            *want_timing[p].entry(index).or_default() += 1;
        }
    }
    let counts = |d: &Distribution| -> BTreeMap<i32, u64> {
        d.bucket_counts()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (d.offset() + i as i32, *c))
            .collect()
    };
    for p in 0..2 {
        assert_eq!(
            counts(&dists[p]),
            want_all[p],
            "Distribution::record, scale {scale}"
        );
        assert_eq!(
            counts(&timings[p].distribution()),
            want_timing[p],
            "Timing::record, scale {scale}"
        );
    }
}

#[test]
fn quantile_estimates() {
    let v = load("quantiles.json");
    for c in v["cases"].as_array().unwrap() {
        let scale = c["scale"].as_i64().unwrap() as i8;
        let bound = c["relative_error_bound"].as_f64().unwrap();
        assert!((Distribution::relative_error(scale) - bound).abs() < 1e-12);
        let mut d = Distribution::new(scale);
        for x in c["values"].as_array().unwrap() {
            d.record(x.as_f64().unwrap());
        }
        assert_eq!(d.count(), c["count"].as_u64().unwrap());
        for q in c["quantiles"].as_array().unwrap() {
            let (qq, est, exact) = (
                q["q"].as_f64().unwrap(),
                q["estimate"].as_f64().unwrap(),
                q["exact"].as_f64().unwrap(),
            );
            let got = d.quantile(qq).unwrap();
            assert!(
                (got - est).abs() <= 1e-12 * est.abs(),
                "scale {scale} q {qq}: {got} vs {est}"
            );
            assert!((got - exact).abs() / exact <= bound * (1.0 + 1e-9));
        }
    }
}

#[test]
fn names_and_label_keys() {
    let v = load("names.json");
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    for n in list("valid_names") {
        assert!(validate_name(&n).is_ok(), "{n}");
    }
    for n in list("invalid_names") {
        assert!(validate_name(&n).is_err(), "{n}");
    }
    for k in list("valid_label_keys") {
        assert!(validate_label_key(&k).is_ok(), "{k}");
    }
    for k in list("invalid_label_keys") {
        assert!(validate_label_key(&k).is_err(), "{k}");
    }
}
