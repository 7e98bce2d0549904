//! Interop and fault tests of the Graphite exporter against real carbon-cache,
//! VictoriaMetrics and a TCP sink the tests control, all on loopback.
//!
//! The backends are started by the tests; when one is not installed the test fails with the
//! install command (`bash scripts/install-peers.sh`).

mod interop {
    pub mod carbon;
    pub mod faults;
    pub mod support;
    pub mod victoria;
}
