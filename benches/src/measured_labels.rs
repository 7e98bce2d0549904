//! The label groups of the `measured` columns: every value interned in a `paracord` set, its
//! way for label values known only at run time. (`measured`'s derive generates the set types
//! and their constructors without doc comments, hence the `allow` here.)
#![allow(missing_docs)]

use measured::LabelGroup;
use paracord::ParaCord;

/// The two labels of the harvest, exposition and memory families ([`crate::SERIES_KEYS`]).
#[derive(Clone, Copy, Debug, PartialEq, LabelGroup)]
#[label(set = MeasuredSeriesSet)]
pub struct MeasuredSeriesLabels<'a> {
    #[label(dynamic_with = ParaCord)]
    pub service: &'a str,
    #[label(dynamic_with = ParaCord)]
    pub route: &'a str,
}

/// The three labels of the lookup benchmark ([`crate::LOOKUP_KEYS`]).
#[derive(Clone, Copy, Debug, PartialEq, LabelGroup)]
#[label(set = MeasuredLookupSet)]
pub struct MeasuredLookupLabels<'a> {
    #[label(dynamic_with = ParaCord)]
    pub method: &'a str,
    #[label(dynamic_with = ParaCord)]
    pub route: &'a str,
    #[label(dynamic_with = ParaCord)]
    pub status: &'a str,
}

impl MeasuredLookupSet {
    /// A set with three empty interners.
    pub fn empty() -> Self {
        MeasuredLookupSet {
            method: ParaCord::default(),
            route: ParaCord::default(),
            status: ParaCord::default(),
        }
    }
}
