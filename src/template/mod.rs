//! Job template rendering (handlebars) from a typed context: `p`, `link`, `spec`. Pure: job
//! files and values in, rendered files out.

pub mod properties;
