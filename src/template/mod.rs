//! Job template rendering (handlebars) from a typed context: `p`, `link`, `spec`. Pure: job
//! files and values in, rendered files out — no file or network IO here; callers fetch the job
//! tarball and store the result.
//!
//! [`JobTemplates`] holds a job's sources (read from a job tarball in memory),
//! [`RenderContext`] the instance, job and deployment values they are rendered with, and
//! [`render_job`] produces a [`RenderedJob`]: the rendered files, a reproducible tarball of them
//! and its digest, which is what decides whether a job's configuration changed. Rendering is
//! strict (a missing property, unknown link or undefined variable is a [`TemplateError`] naming
//! job, template and what was missing) and never HTML-escapes. The template language — the
//! context, the helpers and the rules — is documented for release authors in
//! `docs/templates.md`.

mod context;
mod helpers;
mod job;
pub mod properties;
mod render;

pub use context::{RenderContext, link_value};
pub use helpers::Problem;
pub use job::{JobTarballError, JobTemplates};
pub use render::{RenderedJob, TemplateError, render_job};
