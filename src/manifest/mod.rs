//! Manifests: from YAML text to the documents and models the rest of rosh works on.
//!
//! Owns everything `bosh interpolate` does — go-patch ops files ([`patch`]), `((variable))`
//! interpolation ([`interpolate`]), variable sources and the vars store format ([`vars`]),
//! variable generation ([`generate`]) — plus the validated deployment model ([`model`]: v2
//! manifests, cloud config, runtime config) and the v1 import ([`v1`]). Pure: no file or network
//! IO happens here; `cli` reads files and passes their text in with a name to blame in errors.

pub mod generate;
pub mod interpolate;
pub mod model;
pub mod patch;
pub mod v1;
pub mod vars;
pub mod yaml;
