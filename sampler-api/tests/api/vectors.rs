//! The conformance vectors of `spec/vectors/`: bucket indexes, quantile estimates and names.

use sampler_api::distribution::bucket_index;
use sampler_api::{validate_label_key, validate_name, Distribution};
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
