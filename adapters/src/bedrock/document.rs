//! OpenAI `file` content parts -> Converse `document` blocks. A part's `file.file_data` is a base64
//! `data:` URL whose media type picks the document format (PDF, CSV, Word, Excel, HTML, text,
//! Markdown); `file.filename` gives the document's name, reduced to the characters Bedrock allows
//! (letters, digits, single spaces, hyphens, parentheses, square brackets) and made unique within the
//! request. Uploaded files (`file_id`) cannot be reached from Bedrock and are refused.

use std::collections::{HashMap, HashSet};

use super::types::{Block, Document, DocumentSource, Message, ToolResultContent};
use crate::AdapterError;
use serde_json::Value;

/// Media types Converse reads as documents, with their `DocumentFormat` names.
const FORMATS: [(&str, &str); 9] = [
    ("application/pdf", "pdf"),
    ("text/csv", "csv"),
    ("application/msword", "doc"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
    ("application/vnd.ms-excel", "xls"),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    ),
    ("text/html", "html"),
    ("text/plain", "txt"),
    ("text/markdown", "md"),
];

/// The longest name Bedrock accepts.
const MAX_NAME: usize = 200;

fn invalid(message: impl Into<String>, param: &str) -> AdapterError {
    AdapterError::InvalidRequest {
        message: message.into(),
        param: Some(param.to_string()),
    }
}

/// The `document` block of file part `p` (at `param`).
pub(super) fn document_block<'a>(p: &'a Value, param: &str) -> Result<Document<'a>, AdapterError> {
    let file = p
        .get("file")
        .filter(|f| f.is_object())
        .ok_or_else(|| invalid("a file part needs `file`", param))?;
    let Some(url) = file.get("file_data").and_then(Value::as_str) else {
        let message = if file.get("file_id").is_some() {
            "bedrock cannot read uploaded files (`file_id`): send the file inline as `file_data`"
        } else {
            "a file part needs `file.file_data`"
        };
        return Err(invalid(message, &format!("{param}.file")));
    };
    let at = format!("{param}.file.file_data");
    let (header, data) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .ok_or_else(|| invalid("`file_data` must be a base64 data: URL", &at))?;
    let media_type = header
        .strip_suffix(";base64")
        .ok_or_else(|| invalid("`file_data` must be base64", &at))?;
    // Parameters such as `;charset=utf-8` do not change the format.
    let essence = media_type.split(';').next().unwrap_or_default().trim();
    let format = FORMATS
        .iter()
        .find(|(m, _)| m.eq_ignore_ascii_case(essence))
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            invalid(
                format!(
                    "file type `{essence}` is not supported by bedrock (pdf, csv, doc, docx, xls, xlsx, html, txt, md)"
                ),
                &at,
            )
        })?;
    if data.is_empty() {
        return Err(invalid("the file is empty", &at));
    }
    let filename = file.get("filename").and_then(Value::as_str).unwrap_or_default();
    Ok(Document {
        format,
        name: document_name(filename),
        source: DocumentSource::Bytes(data),
    })
}

/// `filename` without its extension, reduced to what Bedrock allows in a document name.
fn document_name(filename: &str) -> String {
    let stem = match filename.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => filename,
    };
    let mut name = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
            c
        } else if c.is_whitespace() || c == '_' || c == '.' {
            ' '
        } else {
            '-'
        };
        if c == ' ' && (name.is_empty() || name.ends_with(' ')) {
            continue;
        }
        name.push(c);
    }
    let name: String = name.trim_end().chars().take(MAX_NAME).collect();
    let name = name.trim_end().to_string();
    if name.is_empty() {
        "document".to_string()
    } else {
        name
    }
}

/// Gives every document of the request a distinct name (`report`, `report (2)`, ...).
pub(super) fn dedupe_names(messages: &mut [Message<'_>]) {
    // The client decides how many documents share a name: sets, and the next number to try per
    // name, keep this linear.
    let mut seen: HashSet<String> = HashSet::new();
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut fix = |d: &mut Document<'_>| {
        if seen.contains(&d.name) {
            let base = d.name.clone();
            let n = next.entry(base.clone()).or_insert(1);
            loop {
                *n += 1;
                let suffix = format!(" ({n})");
                let keep = MAX_NAME.saturating_sub(suffix.len());
                let name = format!("{}{suffix}", base.chars().take(keep).collect::<String>());
                if !seen.contains(&name) {
                    d.name = name;
                    break;
                }
            }
        }
        seen.insert(d.name.clone());
    };
    for m in messages {
        for b in &mut m.content {
            match b {
                Block::Document(d) => fix(d),
                Block::ToolResult(r) => {
                    for c in &mut r.content {
                        if let ToolResultContent::Document(d) = c {
                            fix(d);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_only_what_bedrock_allows() {
        assert_eq!(document_name("Q3 report (final).pdf"), "Q3 report (final)");
        assert_eq!(document_name("my_file..v2.docx"), "my file v2");
        assert_eq!(document_name("  été/2024 *draft*.txt"), "-t--2024 -draft-");
        assert_eq!(document_name(""), "document");
        assert_eq!(document_name(".pdf"), "pdf");
        assert_eq!(document_name(&"a".repeat(300)).len(), MAX_NAME);
    }
}
