use std::borrow::Cow;

/// A value that could not be built: names the field and the reason, so an API can answer a
/// clear 4xx without guessing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: Cow<'static, str>,
    pub reason: Cow<'static, str>,
}

impl ValidationError {
    pub fn new(field: impl Into<Cow<'static, str>>, reason: impl Into<Cow<'static, str>>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }

    /// The same error reported under another field name (e.g. `fiscalCode` vs `accountHolderCF`).
    pub fn for_field(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.field = field.into();
        self
    }
}
