//! The JSONL interface the evaluator and other languages speak: one
//! `{"text": …, "known_names": […]}` per line in, one
//! `{"masked": …, "entities": [{"start", "end", "type", "score"}]}` per
//! line out. Offsets are Unicode code points into the original text. A
//! malformed line yields `{"error": …}` and processing goes on; blank
//! lines are skipped.

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::detect::Detector;
use crate::entity::Entity;
use crate::token::{TokenTable, mask, restore};

/// Options for [`mask_jsonl_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonlOptions {
    /// Also restore every masked text and report `"roundtrip": true` when
    /// the original came back byte for byte.
    pub roundtrip: bool,
}

/// Counts over one JSONL stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonlSummary {
    /// Lines answered with a masked text.
    pub masked: u64,
    /// Lines answered with an error.
    pub errors: u64,
    /// Lines whose restored text differed from the original (only
    /// counted with [`JsonlOptions::roundtrip`]).
    pub roundtrip_failures: u64,
}

#[derive(Deserialize)]
struct Request {
    text: String,
    #[serde(default)]
    known_names: Vec<String>,
}

#[derive(Serialize)]
struct Response<'a> {
    masked: &'a str,
    entities: Vec<ResponseEntity<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roundtrip: Option<bool>,
}

#[derive(Serialize)]
struct ResponseEntity<'a> {
    start: usize,
    end: usize,
    #[serde(rename = "type")]
    entity_type: &'a str,
    score: f32,
}

#[derive(Serialize)]
struct ErrorResponse {
    error: String,
}

/// Mask every line of `reader` into `writer`. Each line gets its own
/// token table (lines are independent messages). Only I/O errors stop the
/// stream.
pub fn mask_jsonl(
    reader: impl BufRead,
    writer: impl Write,
    detector: &Detector,
) -> io::Result<JsonlSummary> {
    mask_jsonl_with(reader, writer, detector, JsonlOptions::default())
}

/// [`mask_jsonl`] with options.
pub fn mask_jsonl_with(
    mut reader: impl BufRead,
    mut writer: impl Write,
    detector: &Detector,
    options: JsonlOptions,
) -> io::Result<JsonlSummary> {
    let mut summary = JsonlSummary::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request = match serde_json::from_slice::<Request>(&line) {
            Ok(request) => request,
            Err(error) => {
                summary.errors += 1;
                serde_json::to_writer(
                    &mut writer,
                    &ErrorResponse { error: format!("malformed line: {error}") },
                )?;
                writer.write_all(b"\n")?;
                continue;
            }
        };
        let mut table = TokenTable::new();
        let masked = mask(detector, &request.text, &request.known_names, &mut table);
        let roundtrip = options.roundtrip.then(|| restore(&masked.text, &table) == request.text);
        if roundtrip == Some(false) {
            summary.roundtrip_failures += 1;
        }
        let response = Response {
            masked: &masked.text,
            entities: code_point_entities(&request.text, &masked.entities),
            roundtrip,
        };
        serde_json::to_writer(&mut writer, &response)?;
        writer.write_all(b"\n")?;
        summary.masked += 1;
    }
    writer.flush()?;
    Ok(summary)
}

/// Convert byte offsets (sorted by start, non-overlapping) to code-point
/// offsets in one walk over the text.
fn code_point_entities<'a>(text: &str, entities: &'a [Entity]) -> Vec<ResponseEntity<'a>> {
    let mut converted = Vec::with_capacity(entities.len());
    let mut byte_position = 0;
    let mut code_points = 0;
    let mut advance = |target: usize| {
        let skipped = text.get(byte_position..target).map_or(0, |slice| slice.chars().count());
        code_points += skipped;
        byte_position = target.max(byte_position);
        code_points
    };
    for entity in entities {
        let start = advance(entity.start);
        let end = advance(entity.end);
        converted.push(ResponseEntity {
            start,
            end,
            entity_type: entity.entity_type.name(),
            score: entity.score,
        });
    }
    converted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DetectorConfig;

    fn run(input: &str) -> (String, JsonlSummary) {
        let detector = Detector::new(&DetectorConfig::default()).unwrap();
        let mut output = Vec::new();
        let summary = mask_jsonl_with(
            input.as_bytes(),
            &mut output,
            &detector,
            JsonlOptions { roundtrip: true },
        )
        .unwrap();
        (String::from_utf8(output).unwrap(), summary)
    }

    #[test]
    fn offsets_are_code_points_into_the_original() {
        let (output, summary) = run("{\"text\": \"手机号13812345678，邮箱a@example.com\"}\n");
        assert_eq!(
            output,
            "{\"masked\":\"手机号<PHONE_1>，邮箱<EMAIL_1>\",\"entities\":[{\"start\":3,\"end\":14,\"type\":\"PHONE\",\"score\":0.9},{\"start\":17,\"end\":30,\"type\":\"EMAIL\",\"score\":1.0}],\"roundtrip\":true}\n"
        );
        assert_eq!(summary, JsonlSummary { masked: 1, errors: 0, roundtrip_failures: 0 });
    }

    #[test]
    fn malformed_lines_get_an_error_and_processing_continues() {
        let (output, summary) = run(
            "not json\n{\"texts\": 1}\n\n{\"text\": \"hi\", \"known_names\": [\"Ann\"]}\n\u{ff}\n",
        );
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("{\"error\":"));
        assert!(lines[1].starts_with("{\"error\":"));
        assert_eq!(lines[2], "{\"masked\":\"hi\",\"entities\":[],\"roundtrip\":true}");
        assert!(lines[3].starts_with("{\"error\":"));
        assert_eq!(summary.errors, 3);
    }

    #[test]
    fn known_names_are_used() {
        let (output, _) = run("{\"text\": \"Thanks, laura!\", \"known_names\": [\"Laura\"]}");
        assert!(output.starts_with("{\"masked\":\"Thanks, <PERSON_1>!\""), "{output}");
    }
}
