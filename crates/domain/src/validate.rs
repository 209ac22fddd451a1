//! Validation results that name the failing place. A [`Violation`] carries a JSON pointer (for
//! API bodies), a stable machine code and a human message; the HTTP layer turns them into
//! problem documents, importers into row/column reports.

use std::fmt;

/// One thing wrong with an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer (RFC 6901) to the offending value, e.g. `/emails/1/address`.
    pub pointer: String,
    /// Stable snake_case code, e.g. `invalid_email`.
    pub code: &'static str,
    /// Human readable explanation (English).
    pub message: String,
}

/// A list of violations; empty means valid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn push(
        &mut self,
        pointer: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) {
        self.0.push(Violation {
            pointer: pointer.into(),
            code,
            message: message.into(),
        });
    }

    pub fn single(
        pointer: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        let mut v = Self::new();
        v.push(pointer, code, message);
        v
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Violations> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{}: {}",
                if v.pointer.is_empty() {
                    "/"
                } else {
                    &v.pointer
                },
                v.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Trims `s` and checks its length in characters (not bytes, so `ä` and emoji count as one).
pub fn bounded_text(v: &mut Violations, pointer: &str, s: &str, min: usize, max: usize) -> String {
    let t = s.trim();
    let n = t.chars().count();
    if n < min {
        v.push(
            pointer,
            if min == 1 { "required" } else { "too_short" },
            format!("must have at least {min} characters"),
        );
    } else if n > max {
        v.push(
            pointer,
            "too_long",
            format!("must have at most {max} characters, has {n}"),
        );
    } else if t.chars().any(|c| c.is_control()) {
        v.push(
            pointer,
            "control_characters",
            "must not contain control characters",
        );
    }
    t.to_string()
}
