//! Policy files and positions in them.

use std::ops::Range;
use std::path::Path;

use crate::PolicyError;

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: &str, text: &str) -> Source {
        Source {
            name: name.to_owned(),
            text: text.to_owned(),
        }
    }

    /// An error at byte `span` of this file.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1)
            + 1;
        PolicyError {
            file: self.name.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// The files of the policy at `path`: the file itself, or every `*.toml` of
/// the folder in name order.
pub fn read(path: &Path) -> Result<Vec<Source>, PolicyError> {
    let fail = |message: String| PolicyError {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        message,
    };
    let files = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| fail(format!("cannot read the folder: {e}")))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(fail("the folder holds no *.toml file".to_owned()));
        }
        files
    } else {
        vec![path.to_owned()]
    };
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file).map_err(|e| PolicyError {
                file: file.display().to_string(),
                line: 1,
                column: 1,
                message: format!("cannot read: {e}"),
            })?;
            Ok(Source::new(&file.display().to_string(), &text))
        })
        .collect()
}
