//! Config errors: every one names the file, line, column and key, and they are
//! reported all at once.

use std::fmt;

use serde_saphyr::Location;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem has no place in the file (a default value).
    pub line: u64,
    pub column: u64,
    /// Dotted path of the offending key, e.g. `routes[0].upstream`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        } else {
            write!(f, "{}: ", self.file)?;
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

/// Folds a multi-line message (some library errors pretty-print) into one line.
pub fn one_line(message: &str) -> String {
    if !message.contains('\n') {
        return message.to_owned();
    }
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every problem found in one config file; never empty.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn single(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors while a config is validated.
#[derive(Debug)]
pub struct Diagnostics {
    file: String,
    errors: Vec<ConfigError>,
}

impl Diagnostics {
    pub fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            errors: Vec::new(),
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records an error at `loc` (use `Location::UNKNOWN` for defaults).
    pub fn error(&mut self, loc: &Location, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: loc.line(),
            column: loc.column(),
            key: key.into(),
            message: one_line(&message.into()),
        });
    }

    /// How many errors were recorded so far (to tell whether a step added any).
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}
