//! (placeholder until the generator lands: same API, generates nothing)

use serde_yaml_ng::Value;

#[derive(Debug, thiserror::Error)]
#[error("variable generation is not built yet")]
pub struct GenerateError;

#[derive(Default)]
pub struct Generator;

impl Generator {
    pub fn new() -> Self {
        Self
    }
    pub fn prefetch(&self, _key_lengths: &[u32]) {}
    pub fn generate(
        &self,
        _kind: &str,
        _options: &Value,
        _lookup: &mut dyn FnMut(&str) -> Option<Value>,
    ) -> Result<Value, GenerateError> {
        Err(GenerateError)
    }
}

pub fn key_length_for(_kind: &str, _options: &Value) -> Option<u32> {
    None
}
