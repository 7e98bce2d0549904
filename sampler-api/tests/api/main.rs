//! Behaviour of the core as a library user sees it: isolation, drop policy, shutdown,
//! lifetimes, bounds, exactness and the spec's conformance vectors.

mod alloc;
mod harvest;
mod instruments;
mod stress;
mod vectors;
