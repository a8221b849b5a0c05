//! Policy files and positions in them.

use std::ops::Range;
use std::path::Path;

use crate::PolicyError;

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
    /// Where each line starts: a position's line is a binary search away
    /// (a policy of 50,000 rules asks 50,000 times).
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(name: &str, text: &str) -> Source {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            name: name.to_owned(),
            text: text.to_owned(),
            line_starts,
        }
    }

    /// An error at byte `span` of this file.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        let at = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= at);
        let line_start = self.line_starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(line_start..at)
            .map_or(1, |s| s.chars().count() + 1);
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
