//! fault tests
