//! PURE: from a manifest, its configs and the uploaded releases to what should exist
//! ([`desired`]), and from there to the changes that make it so. No IO here: records and
//! observations are passed in, values come out.

pub mod desired;
