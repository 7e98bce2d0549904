fn main() {
    // `--cfg loom` runs the sequence lock's model (src/seqlock.rs).
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
