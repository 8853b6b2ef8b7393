//! The OTLP trace messages, read straight from an ExportTraceServiceRequest's bytes.
//!
//! Field numbers are those of opentelemetry-proto's trace.proto and common.proto. A field read
//! with a wire type other than its declared one is an unknown field to the protobuf runtime and
//! is skipped here too; a singular scalar that occurs twice keeps its last value; a singular
//! message that occurs twice is merged (`Ranges`). Nothing here allocates per attribute value:
//! values borrow the batch's bytes.

use crate::wire::{err, text, walk, walk_all, Field, Ranges, Result, MAX_DEPTH};

/// Where one span lies, and which resource and scope it belongs to.
pub struct SpanAt {
    pub start: usize,
    pub end: usize,
    pub scope: usize,
}

pub struct ScopeAt {
    pub resource: usize,
    pub ranges: Ranges,
}

/// Resources, scopes and spans of a batch, in message order.
pub struct Layout {
    pub resources: Vec<Ranges>,
    pub scopes: Vec<ScopeAt>,
    pub spans: Vec<SpanAt>,
    /// Resource r's spans are `resource_starts[r]..resource_starts[r + 1]`.
    pub resource_starts: Vec<usize>,
}

pub fn layout(data: &[u8]) -> Result<Layout> {
    let mut out = Layout { resources: Vec::new(), scopes: Vec::new(), spans: Vec::new(), resource_starts: Vec::new() };
    walk(data, 0, data.len(), |number, field| {
        if let (1, Field::Bytes(start, end)) = (number, field) {
            resource_spans(data, start, end, &mut out)?;
        }
        Ok(())
    })?;
    out.resource_starts.push(out.spans.len());
    Ok(out)
}

fn resource_spans(data: &[u8], start: usize, end: usize, out: &mut Layout) -> Result<()> {
    let resource = out.resources.len();
    out.resources.push(Vec::new());
    out.resource_starts.push(out.spans.len());
    walk(data, start, end, |number, field| {
        match (number, field) {
            (1, Field::Bytes(s, e)) => out.resources[resource].push((s, e)),
            (2, Field::Bytes(s, e)) => scope_spans(data, s, e, resource, out)?,
            _ => {}
        }
        Ok(())
    })
}

fn scope_spans(data: &[u8], start: usize, end: usize, resource: usize, out: &mut Layout) -> Result<()> {
    let scope = out.scopes.len();
    out.scopes.push(ScopeAt { resource, ranges: Vec::new() });
    walk(data, start, end, |number, field| {
        match (number, field) {
            (1, Field::Bytes(s, e)) => out.scopes[scope].ranges.push((s, e)),
            (2, Field::Bytes(s, e)) => out.spans.push(SpanAt { start: s, end: e, scope }),
            _ => {}
        }
        Ok(())
    })
}

/// An AnyValue: the last oneof member set wins; array and kvlist occurrences of the same member merge.
pub enum Any<'a> {
    Empty,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Ranges),
    Kvlist(Ranges),
}

pub fn any_value<'a>(data: &'a [u8], ranges: &[(usize, usize)]) -> Result<Any<'a>> {
    let mut value = Any::Empty;
    walk_all(data, ranges, |number, field| {
        value = match (number, field, std::mem::replace(&mut value, Any::Empty)) {
            (1, Field::Bytes(s, e), _) => Any::Str(text(data, s, e)?),
            (2, Field::Varint(v), _) => Any::Bool(v != 0),
            (3, Field::Varint(v), _) => Any::Int(v as i64),
            (4, Field::Fixed64(v), _) => Any::Double(f64::from_bits(v)),
            (5, Field::Bytes(s, e), Any::Array(mut r)) => { r.push((s, e)); Any::Array(r) }
            (5, Field::Bytes(s, e), _) => Any::Array(vec![(s, e)]),
            (6, Field::Bytes(s, e), Any::Kvlist(mut r)) => { r.push((s, e)); Any::Kvlist(r) }
            (6, Field::Bytes(s, e), _) => Any::Kvlist(vec![(s, e)]),
            (7, Field::Bytes(s, e), _) => Any::Bytes(&data[s..e]),
            (_, _, kept) => kept,
        };
        Ok(())
    })?;
    Ok(value)
}

/// The items of an ArrayValue (field 1, AnyValue) or a KeyValueList (field 1, KeyValue).
pub fn items(data: &[u8], ranges: &[(usize, usize)]) -> Result<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    walk_all(data, ranges, |number, field| {
        if let (1, Field::Bytes(s, e)) = (number, field) {
            out.push((s, e));
        }
        Ok(())
    })?;
    Ok(out)
}

/// A KeyValue: its key and its value's ranges (a value that occurs twice merges).
pub struct KeyValue<'a> {
    pub key: &'a [u8],
    pub value: Ranges,
}

pub fn key_value(data: &[u8], start: usize, end: usize) -> Result<KeyValue<'_>> {
    let mut kv = KeyValue { key: b"", value: Vec::new() };
    walk(data, start, end, |number, field| {
        match (number, field) {
            (1, Field::Bytes(s, e)) => kv.key = text(data, s, e)?.as_bytes(),
            (2, Field::Bytes(s, e)) => kv.value.push((s, e)),
            _ => {}
        }
        Ok(())
    })?;
    Ok(kv)
}

/// Check the nesting of an AnyValue before converting it recursively.
pub fn check_depth(depth: usize, pos: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return err("AnyValue nested too deeply", pos);
    }
    Ok(())
}

/// The fields of one span the columns read; strings and ids borrow the batch's bytes.
#[derive(Default)]
pub struct Span<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub parent_span_id: &'a [u8],
    pub name: &'a str,
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    pub attributes: Vec<(usize, usize)>,
    pub events: Vec<(usize, usize)>,
    pub links: Vec<(usize, usize)>,
    pub status: Ranges,
}

/// Read the span at `data[start..end]` into `s`, reusing its lists (one allocation per batch, not per span).
pub fn read_span<'a>(data: &'a [u8], start: usize, end: usize, s: &mut Span<'a>) -> Result<()> {
    let (mut attributes, mut events, mut links, mut status) =
        (std::mem::take(&mut s.attributes), std::mem::take(&mut s.events), std::mem::take(&mut s.links),
         std::mem::take(&mut s.status));
    attributes.clear();
    events.clear();
    links.clear();
    status.clear();
    *s = Span { attributes, events, links, status, ..Span::default() };
    walk(data, start, end, |number, field| {
        match (number, field) {
            (1, Field::Bytes(a, b)) => s.trace_id = &data[a..b],
            (2, Field::Bytes(a, b)) => s.span_id = &data[a..b],
            (3, Field::Bytes(a, b)) => s.trace_state = text(data, a, b)?,
            (4, Field::Bytes(a, b)) => s.parent_span_id = &data[a..b],
            (5, Field::Bytes(a, b)) => s.name = text(data, a, b)?,
            (6, Field::Varint(v)) => s.kind = v as i32,
            (7, Field::Fixed64(v)) => s.start = v,
            (8, Field::Fixed64(v)) => s.end = v,
            (9, Field::Bytes(a, b)) => s.attributes.push((a, b)),
            (11, Field::Bytes(a, b)) => s.events.push((a, b)),
            (13, Field::Bytes(a, b)) => s.links.push((a, b)),
            (15, Field::Bytes(a, b)) => s.status.push((a, b)),
            _ => {}
        }
        Ok(())
    })
}

/// Status: (code, message).
pub fn status<'a>(data: &'a [u8], ranges: &[(usize, usize)]) -> Result<(i32, &'a str)> {
    let (mut code, mut message) = (0i32, "");
    walk_all(data, ranges, |number, field| {
        match (number, field) {
            (2, Field::Bytes(a, b)) => message = text(data, a, b)?,
            (3, Field::Varint(v)) => code = v as i32,
            _ => {}
        }
        Ok(())
    })?;
    Ok((code, message))
}

/// InstrumentationScope: (name, version).
pub fn scope<'a>(data: &'a [u8], ranges: &[(usize, usize)]) -> Result<(&'a str, &'a str)> {
    let (mut name, mut version) = ("", "");
    walk_all(data, ranges, |number, field| {
        match (number, field) {
            (1, Field::Bytes(a, b)) => name = text(data, a, b)?,
            (2, Field::Bytes(a, b)) => version = text(data, a, b)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok((name, version))
}

/// The KeyValue ranges of a Resource's attributes (field 1).
pub fn resource_attributes(data: &[u8], ranges: &[(usize, usize)]) -> Result<Vec<(usize, usize)>> {
    items(data, ranges)
}

/// Event: (time, name, attributes).
pub fn event(data: &[u8], start: usize, end: usize) -> Result<(u64, &str, Vec<(usize, usize)>)> {
    let (mut time, mut name, mut attrs) = (0u64, "", Vec::new());
    walk(data, start, end, |number, field| {
        match (number, field) {
            (1, Field::Fixed64(v)) => time = v,
            (2, Field::Bytes(a, b)) => name = text(data, a, b)?,
            (3, Field::Bytes(a, b)) => attrs.push((a, b)),
            _ => {}
        }
        Ok(())
    })?;
    Ok((time, name, attrs))
}

/// Link: (trace id, span id, trace state, attributes).
pub struct Link<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub attributes: Vec<(usize, usize)>,
}

pub fn link(data: &[u8], start: usize, end: usize) -> Result<Link<'_>> {
    let mut l = Link { trace_id: b"", span_id: b"", trace_state: "", attributes: Vec::new() };
    walk(data, start, end, |number, field| {
        match (number, field) {
            (1, Field::Bytes(a, b)) => l.trace_id = &data[a..b],
            (2, Field::Bytes(a, b)) => l.span_id = &data[a..b],
            (3, Field::Bytes(a, b)) => l.trace_state = text(data, a, b)?,
            (4, Field::Bytes(a, b)) => l.attributes.push((a, b)),
            _ => {}
        }
        Ok(())
    })?;
    Ok(l)
}
