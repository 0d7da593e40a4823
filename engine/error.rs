//! The engine's one error type.

/// Why a genome cannot be read, compiled or rendered, a request cannot be served, or the GPU
/// path is unavailable or failed. Callers only ever show the message (clients see it verbatim),
/// so one message-carrying type serves every layer and crosses layers without conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct Error(pub(crate) String);

impl Error {
    /// An error with `message`, for code wrapping the engine that reports its own failures
    /// alongside the engine's.
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}
