//! The pattern extractor: segments found in streamed text however it is chunked, hostile
//! input (caps, bad UTF-8, bad calls) refused with typed errors and never a panic.
#![cfg(feature = "agent")]

use aegeantic::agent::{
    ExtractError, Extractor, Pattern, PatternFormat, PatternSet, SegmentEnd, SegmentEvent,
    SegmentKind, ToolCallError, DEFAULT_INPUT_CAP,
};
use proptest::prelude::*;
use serde_json::{json, Value};

/// The events with adjacent pieces of the same text joined, the one thing chunking may
/// change.
fn coalesce(events: Vec<SegmentEvent>) -> Vec<String> {
    let mut out: Vec<SegmentEvent> = Vec::new();
    for event in events {
        match (out.last_mut(), event) {
            (Some(SegmentEvent::Text(last)), SegmentEvent::Text(text)) => last.push_str(&text),
            (
                Some(SegmentEvent::Content {
                    segment: last_segment,
                    text: last,
                    ..
                }),
                SegmentEvent::Content { segment, text, .. },
            ) if *last_segment == segment => last.push_str(&text),
            (_, event) => out.push(event),
        }
    }
    out.iter().map(|event| format!("{event:?}")).collect()
}

fn whole(set: &PatternSet, text: &[u8]) -> Vec<SegmentEvent> {
    let mut extractor = Extractor::new(set.clone());
    let mut events = extractor.push_bytes(text).unwrap();
    events.extend(extractor.finish().unwrap());
    events
}

fn chunked(set: &PatternSet, text: &[u8], cuts: &[usize]) -> Vec<SegmentEvent> {
    let mut extractor = Extractor::new(set.clone());
    let mut events = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain([&text.len()]) {
        events.extend(extractor.push_bytes(&text[from..cut]).unwrap());
        from = cut;
    }
    events.extend(extractor.finish().unwrap());
    events
}

fn ends(events: &[SegmentEvent]) -> Vec<&SegmentEnd> {
    events
        .iter()
        .filter_map(|event| match event {
            SegmentEvent::End(end) => Some(end),
            _ => None,
        })
        .collect()
}

fn calls(events: &[SegmentEvent]) -> Vec<(String, String, Value)> {
    ends(events)
        .into_iter()
        .filter_map(|end| end.call.clone()?.ok())
        .map(|call| {
            let args = serde_json::from_str(&call.arguments).unwrap();
            (call.id, call.name, args)
        })
        .collect()
}

fn text_of(events: &[SegmentEvent]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            SegmentEvent::Text(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

const ANSWER: &str = "Je vérifie 🌦. <think>il faut « deux » appels</think>\
    <tool>{\"name\": \"weather\", \"arguments\": {\"city\": \"Zürich\"}}</tool> puis \
    <tool>{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}, \"call_id\": \"c9\"}</tool> fin";

#[test]
fn tags_split_at_every_byte_give_the_same_segments() {
    let set = PatternSet::tool_tags();
    let text = ANSWER.as_bytes();
    let expected = coalesce(whole(&set, text));
    for cut in 0..=text.len() {
        assert_eq!(
            coalesce(chunked(&set, text, &[cut])),
            expected,
            "cut at {cut}"
        );
    }
    // Every pair of cuts around the first call's tags, and every byte a chunk of its own.
    let first = ANSWER.find("<tool>").unwrap();
    for a in first - 3..first + 12 {
        for b in a..text.len() {
            assert_eq!(
                coalesce(chunked(&set, text, &[a, b])),
                expected,
                "cuts {a}, {b}"
            );
        }
    }
    let bytewise: Vec<usize> = (1..text.len()).collect();
    assert_eq!(coalesce(chunked(&set, text, &bytewise)), expected);
}

#[test]
fn several_calls_in_one_answer_in_order() {
    let events = whole(&PatternSet::tool_tags(), ANSWER.as_bytes());
    assert_eq!(
        calls(&events),
        [
            (
                "text_call_1".into(),
                "weather".into(),
                json!({"city": "Zürich"})
            ),
            ("c9".into(), "add".into(), json!({"a": 1, "b": 2})),
        ]
    );
    let kinds: Vec<SegmentKind> = ends(&events).iter().map(|end| end.kind).collect();
    assert_eq!(
        kinds,
        [SegmentKind::Reasoning, SegmentKind::Tool, SegmentKind::Tool]
    );
    assert_eq!(ends(&events)[0].content, "il faut « deux » appels");
    assert_eq!(text_of(&events), "Je vérifie 🌦.  puis  fin");
    // Start, content, end for each segment, numbered in order.
    let starts: Vec<(u32, usize)> = events
        .iter()
        .filter_map(|event| match event {
            SegmentEvent::Start {
                segment, pattern, ..
            } => Some((*segment, *pattern)),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [(0, 1), (1, 0), (2, 0)]);
}

#[test]
fn multibyte_tags_split_inside_a_character() {
    let set = PatternSet::new([Pattern::tool("«outil»", "«/outil»", PatternFormat::Json)]).unwrap();
    let text = "é«outil»{\"name\":\"ß\"}«/outil»ü".as_bytes();
    let expected = coalesce(whole(&set, text));
    assert_eq!(calls(&whole(&set, text))[0].1, "ß");
    for a in 0..=text.len() {
        for b in a..=text.len() {
            assert_eq!(
                coalesce(chunked(&set, text, &[a, b])),
                expected,
                "cuts {a}, {b}"
            );
        }
    }
}

#[test]
fn segments_do_not_nest() {
    let set = PatternSet::tool_tags();
    // A tool tag inside reasoning is reasoning.
    let events = whole(
        &set,
        b"<think>maybe <tool>{\"name\":\"x\"}</tool>?</think>ok",
    );
    let ends = ends(&events);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].kind, SegmentKind::Reasoning);
    assert_eq!(ends[0].content, "maybe <tool>{\"name\":\"x\"}</tool>?");
    assert_eq!(text_of(&events), "ok");
    // The first end tag closes: the inner start tag is content, the outer end tag text.
    let events = whole(&set, b"<tool><tool>{\"name\":\"x\"}</tool></tool>");
    let end = ends_of(&events);
    assert!(matches!(end[0].call, Some(Err(ToolCallError::Json(_)))));
    assert_eq!(end[0].content, "<tool>{\"name\":\"x\"}");
    assert_eq!(text_of(&events), "</tool>");
}

fn ends_of(events: &[SegmentEvent]) -> Vec<SegmentEnd> {
    ends(events).into_iter().cloned().collect()
}

#[test]
fn an_unclosed_segment_ends_at_finish_and_a_call_in_it_is_not_run() {
    let set = PatternSet::tool_tags();
    let events = whole(&set, b"a <tool>{\"name\":\"add\",\"arguments\":{}}</to");
    let end = ends_of(&events);
    assert_eq!(end.len(), 1);
    assert!(!end[0].closed);
    // The held start of an end tag is content once the answer is over.
    assert_eq!(end[0].content, "{\"name\":\"add\",\"arguments\":{}}</to");
    let error = end[0].call.clone().unwrap().unwrap_err();
    assert!(matches!(&error, ToolCallError::Unclosed { end } if end == "</tool>"));
    assert_eq!(
        error.to_string(),
        "the tool call was not closed with \"</tool>\""
    );

    let end = ends_of(&whole(&set, b"<think>hmm"));
    assert!(!end[0].closed && end[0].call.is_none());
    // A held possible start tag is text at the end.
    assert_eq!(text_of(&whole(&set, b"1 < 2 <thin")), "1 < 2 <thin");
}

#[test]
fn a_malformed_call_is_an_error_event_and_extraction_goes_on() {
    let set = PatternSet::tool_tags();
    let text = b"<tool>{\"name\": \"add\", \"arguments\": {\"a\": 1,}}</tool>\
                 <tool>{\"arguments\": {}}</tool><tool>{\"name\": \"add\"}</tool>";
    let events = whole(&set, text);
    let end = ends_of(&events);
    assert_eq!(end.len(), 3);
    let error = end[0].call.clone().unwrap().unwrap_err();
    assert!(matches!(error, ToolCallError::Json(_)));
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("column"), "{cause}");
    assert!(matches!(end[1].call, Some(Err(ToolCallError::NoName))));
    assert_eq!(
        calls(&events),
        [("text_call_2".into(), "add".into(), json!({}))]
    );
}

#[test]
fn the_builtin_styles() {
    let xml = whole(
        &PatternSet::xml_tags(),
        b"<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}\n</tool_call>",
    );
    assert_eq!(
        calls(&xml),
        [("text_call_0".into(), "f".into(), json!({"q": "x"}))]
    );
    let fenced = whole(
        &PatternSet::fenced(),
        b"Let me look.\n```tool\n{\"name\": \"f\", \"arguments\": {}}\n```\n```rust\nfn x() {}\n```",
    );
    assert_eq!(
        calls(&fenced),
        [("text_call_0".into(), "f".into(), json!({}))]
    );
    assert_eq!(text_of(&fenced), "Let me look.\n\n```rust\nfn x() {}\n```");
    let lines = whole(
        &PatternSet::name_arguments(),
        b"<tool>\nName: add\nArguments: {\"a\": 1,\n \"b\": 2}\n</tool>",
    );
    assert_eq!(
        calls(&lines),
        [("text_call_0".into(), "add".into(), json!({"a": 1, "b": 2}))]
    );
}

#[test]
fn explicit_only_keeps_nothing_but_segments() {
    let set = PatternSet::new([
        Pattern::response("<answer>", "</answer>"),
        Pattern::reasoning("<think>", "</think>"),
    ])
    .unwrap()
    .explicit_only();
    let found = set
        .extract("chatter <think>why</think> more <answer>42</answer> bye")
        .unwrap();
    assert_eq!(found.response, "42");
    assert_eq!(found.reasoning, ["why"]);
    let found = PatternSet::tool_tags()
        .extract("a<think>b</think>c")
        .unwrap();
    assert_eq!(found.response, "ac");
}

#[test]
fn the_cap_cannot_be_passed_by_a_stream_that_never_closes() {
    let mut extractor = Extractor::new(PatternSet::tool_tags());
    extractor.push("<tool>").unwrap();
    let chunk = "x".repeat(1000);
    let mut pushed = "<tool>".len();
    let error = loop {
        match extractor.push(&chunk) {
            Ok(_) => pushed += chunk.len(),
            Err(error) => break error,
        }
        assert!(extractor.buffered() <= DEFAULT_INPUT_CAP);
    };
    assert_eq!(error, ExtractError::InputCap { cap: 1 << 20 });
    assert!(pushed <= DEFAULT_INPUT_CAP && pushed + chunk.len() > DEFAULT_INPUT_CAP);
    assert_eq!(
        error.to_string(),
        "the model's answer exceeds the pattern extractor's cap of 1048576 bytes"
    );
    // The refused chunk was not taken in: what fits still does, and nothing more.
    let room = DEFAULT_INPUT_CAP - pushed;
    extractor.push(&"y".repeat(room)).unwrap();
    assert_eq!(extractor.buffered(), DEFAULT_INPUT_CAP - "<tool>".len());
    assert!(extractor.push("z").is_err());
    // A retried answer starts from zero.
    extractor.reset();
    assert_eq!(extractor.buffered(), 0);
    assert!(extractor.push(&chunk).is_ok());
}

#[test]
fn a_retried_answer_leaves_nothing_of_the_failed_one() {
    let mut extractor = Extractor::new(PatternSet::tool_tags());
    let events = extractor.push("Hi <think>half a thought <to").unwrap();
    assert!(matches!(events[1], SegmentEvent::Start { segment: 0, .. }));
    extractor.reset();
    let mut events = extractor.push("ol>{\"name\":\"a\"}</tool>").unwrap();
    events.extend(extractor.finish().unwrap());
    // The old open segment and its held "<to" are gone: this answer has no segment.
    assert_eq!(
        coalesce(events),
        [format!(
            "{:?}",
            SegmentEvent::Text("ol>{\"name\":\"a\"}</tool>".into())
        )]
    );
    let mut events = extractor.push("<tool>{\"name\":\"a\"}</tool>").unwrap();
    events.extend(extractor.finish().unwrap());
    assert_eq!(calls(&events)[0].0, "text_call_0", "numbering starts again");
}

#[test]
fn bad_utf8_is_refused_with_its_offset() {
    let mut extractor = Extractor::new(PatternSet::tool_tags());
    extractor.push_bytes(b"ab\xC3").unwrap();
    assert_eq!(
        extractor.push_bytes(b"\xC3").unwrap_err(),
        ExtractError::InvalidUtf8 { offset: 2 }
    );
    // The refused chunk changed nothing: the character can still be completed.
    let events = extractor.push_bytes(b"\xA9").unwrap();
    assert_eq!(
        coalesce(events),
        [format!("{:?}", SegmentEvent::Text("é".into()))]
    );
    assert_eq!(
        extractor.push_bytes(b"\xFF").unwrap_err(),
        ExtractError::InvalidUtf8 { offset: 4 }
    );
    extractor.push_bytes(b"\xF0\x9F").unwrap();
    assert_eq!(extractor.finish().unwrap_err(), ExtractError::TruncatedUtf8);
    assert_eq!(
        extractor.push("x").unwrap_err(),
        ExtractError::InvalidUtf8 { offset: 4 },
        "a str cannot complete a character either"
    );
}

/// Pieces that make tags, near-tags, calls and multi-byte text when joined.
fn fragment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "<tool>",
        "</tool>",
        "<think>",
        "</think>",
        "<tool_call>",
        "</tool_call>",
        "<",
        "</",
        "<to",
        "</too",
        ">",
        "{\"name\":\"a\",\"arguments\":{\"x\":1}}",
        "{\"name\":",
        "}",
        "Name: a\n",
        "Arguments: {}",
        "```tool\n",
        "```",
        "é",
        "思",
        "🌦",
        "x",
        " ",
        "\n",
    ])
}

fn sets() -> impl Strategy<Value = PatternSet> {
    prop::sample::select(vec![
        PatternSet::tool_tags(),
        PatternSet::xml_tags(),
        PatternSet::name_arguments(),
        PatternSet::fenced(),
        PatternSet::tool_tags().explicit_only(),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_chunking_gives_the_events_of_the_whole(
        set in sets(),
        pieces in prop::collection::vec(fragment(), 0..40),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let text = pieces.concat();
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(text.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(
            coalesce(chunked(&set, text.as_bytes(), &cuts)),
            coalesce(whole(&set, text.as_bytes()))
        );
    }

    #[test]
    fn any_string_in_any_str_chunks_gives_the_events_of_the_whole(
        set in sets(),
        text in any::<String>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts
            .iter()
            .map(|cut| cut.index(text.len() + 1))
            .filter(|cut| text.is_char_boundary(*cut))
            .collect();
        cuts.sort_unstable();
        let mut extractor = Extractor::new(set.clone());
        let mut events = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&text.len()]) {
            events.extend(extractor.push(&text[from..cut]).unwrap());
            from = cut;
        }
        events.extend(extractor.finish().unwrap());
        prop_assert_eq!(coalesce(events), coalesce(whole(&set, text.as_bytes())));
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_pass_the_cap(
        set in sets(),
        cap in 0usize..300,
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..20),
        tagged in any::<bool>(),
    ) {
        let mut extractor = Extractor::new(set.with_input_cap(cap));
        let mut taken = 0usize;
        for (n, chunk) in chunks.iter().enumerate() {
            // Half the runs open a segment first, so that content piles up.
            let chunk = if tagged && n == 0 { [b"<tool>".as_slice(), chunk].concat() } else { chunk.clone() };
            match extractor.push_bytes(&chunk) {
                Ok(_) => taken += chunk.len(),
                Err(ExtractError::InputCap { cap: refused }) => {
                    prop_assert_eq!(refused, cap);
                    prop_assert!(taken + chunk.len() > cap);
                }
                Err(ExtractError::InvalidUtf8 { offset }) => prop_assert!(offset <= taken + chunk.len()),
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
            prop_assert!(taken <= cap);
            prop_assert!(extractor.buffered() <= taken);
        }
        match extractor.finish() {
            Ok(_) | Err(ExtractError::TruncatedUtf8) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}
