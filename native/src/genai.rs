//! The genai processor's per-span wire work: picking the attributes it reads (`Picker`, its
//! alias tables' keys handed over once when the processor is built) and writing the attributes
//! it adds straight into the batch's bytes (`splice`).

use std::collections::{BTreeMap, HashSet};

use rustc_hash::{FxHashMap, FxHashSet};

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};

use crate::convert::{py_err, Strings};
use crate::otlp::{self, any_value, key_value, layout, Any};
use crate::wire::{varint_bytes, walk_raw, Field, Result};

const EXCEPTION: &str = "exception";
const EXCEPTION_TYPE: &[u8] = b"exception.type";

/// The keys the processor reads and the instrumentation scopes whose spans it looks at even
/// without any of them (the OpenAI Agents bridges).
#[pyclass(frozen, module = "agentdbg_native")]
pub struct Picker {
    wanted: FxHashSet<Vec<u8>>,
    scopes: FxHashSet<Vec<u8>>,
}

/// A scalar as Python (processors/genai/values.py `pick`): arrays, maps, bytes and an empty value are None.
fn scalar<'py>(py: Python<'py>, value: &Any, strings: &mut Strings<'py>) -> Bound<'py, PyAny> {
    match value {
        Any::Str(s) => strings.value(s).into_any(),
        Any::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Any::Int(i) => i.into_pyobject(py).map(Bound::into_any).unwrap_or_else(|_| py.None().into_bound(py)),
        Any::Double(d) => PyFloat::new(py, *d).into_any(),
        _ => py.None().into_bound(py),
    }
}

/// The `exception.type` of the span's first `exception` event, when a non-empty string.
fn exception_type<'a>(data: &'a [u8], span: &otlp::Span<'a>) -> Result<Option<&'a str>> {
    for &(a, b) in &span.events {
        let (_, name, kvs) = otlp::event(data, a, b)?;
        if name != EXCEPTION {
            continue;
        }
        for (s, e) in kvs {
            let kv = key_value(data, s, e)?;
            if kv.key == EXCEPTION_TYPE {
                if let Any::Str(found) = any_value(data, &kv.value)? {
                    if !found.is_empty() {
                        return Ok(Some(found));
                    }
                }
            }
        }
        return Ok(None);
    }
    Ok(None)
}

#[pymethods]
impl Picker {
    #[new]
    fn new(wanted: HashSet<String>, scopes: HashSet<String>) -> Self {
        Picker {
            wanted: wanted.into_iter().map(String::into_bytes).collect(),
            scopes: scopes.into_iter().map(String::into_bytes).collect(),
        }
    }

    /// (trace ids of every span, candidates): a candidate is a span that has a wanted key or
    /// comes from one of the scopes, as (span index, {key: scalar}, name, status code,
    /// exception type or None, scope name).
    fn pick<'py>(&self, py: Python<'py>, wire: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
        let data = wire;
        let lay = layout(data).map_err(py_err)?;
        let mut strings = Strings::new(py);
        let mut scope_names = Vec::with_capacity(lay.scopes.len());
        for scope in &lay.scopes {
            let (name, _) = otlp::scope(data, &scope.ranges).map_err(py_err)?;
            scope_names.push((name, self.scopes.contains(name.as_bytes())));
        }
        let mut trace_ids = Vec::with_capacity(lay.spans.len());
        // Spans of a trace share one bytes object: the processor keys its per-trace dicts by it.
        let mut known: FxHashMap<&[u8], Bound<'py, PyBytes>> = FxHashMap::default();
        let mut candidates = Vec::new();
        let mut s = otlp::Span::default();
        for (i, at) in lay.spans.iter().enumerate() {
            otlp::read_span(data, at.start, at.end, &mut s).map_err(py_err)?;
            trace_ids.push(known.entry(s.trace_id).or_insert_with(|| PyBytes::new(py, s.trace_id)).clone());
            let mut attrs: Option<Bound<'py, PyDict>> = None;
            for &(a, b) in &s.attributes {
                let kv = key_value(data, a, b).map_err(py_err)?;
                if self.wanted.contains(kv.key) {
                    let value = any_value(data, &kv.value).map_err(py_err)?;
                    attrs.get_or_insert_with(|| PyDict::new(py)).set_item(strings.get(kv.key), scalar(py, &value, &mut strings))?;
                }
            }
            let (scope_name, from_scope) = scope_names[at.scope];
            let attrs = match attrs {
                Some(found) => found,
                None if from_scope => PyDict::new(py),
                None => continue,
            };
            let (code, _) = otlp::status(data, &s.status).map_err(py_err)?;
            let exception = exception_type(data, &s).map_err(py_err)?;
            let candidate: Vec<Bound<'py, PyAny>> = vec![
                i.into_pyobject(py)?.into_any(), attrs.into_any(), strings.get(s.name.as_bytes()).into_any(),
                code.into_pyobject(py)?.into_any(),
                exception.map_or_else(|| py.None().into_bound(py), |t| PyString::new(py, t).into_any()),
                strings.get(scope_name.as_bytes()).into_any(),
            ];
            candidates.push(PyTuple::new(py, candidate)?);
        }
        PyTuple::new(py, [PyList::new(py, trace_ids)?.into_any(), PyList::new(py, candidates)?.into_any()])
    }
}

/// Bytes to append to spans, by the position where each span's encoding starts.
struct Marks(BTreeMap<usize, Vec<u8>>);

impl Marks {
    /// Whether a span with bytes to append starts inside the message `data[start..end]`.
    fn inside(&self, start: usize, end: usize) -> bool {
        self.0.range(start + 1..=end).next().is_some()
    }
}

fn header(number: u64, length: usize, out: &mut Vec<u8>) {
    varint_bytes((number << 3) | 2, out);
    varint_bytes(length as u64, out);
}

/// Copy `data[start..end]` (a message at `depth`: 0 request, 1 ResourceSpans, 2 ScopeSpans)
/// to `out`, appending the marked bytes to the marked spans and fixing the lengths around them.
fn rewrite(data: &[u8], start: usize, end: usize, depth: u8, marks: &Marks, out: &mut Vec<u8>) -> Result<()> {
    walk_raw(data, start, end, |number, field, tag_start, field_end| {
        match (depth, number, field) {
            (2, 2, Some(Field::Bytes(s, e))) if marks.0.contains_key(&s) => {
                let extra = &marks.0[&s];
                header(number, e - s + extra.len(), out);
                out.extend_from_slice(&data[s..e]);
                out.extend_from_slice(extra);
            }
            (0, 1, Some(Field::Bytes(s, e))) | (1, 2, Some(Field::Bytes(s, e))) if marks.inside(s, e) => {
                let mut inner = Vec::with_capacity(e - s + 256);
                rewrite(data, s, e, depth + 1, marks, &mut inner)?;
                header(number, inner.len(), out);
                out.extend_from_slice(&inner);
            }
            _ => out.extend_from_slice(&data[tag_start..field_end]),
        }
        Ok(())
    })
}

/// The request with `inserts` (span index, encoded Span fields) appended to those spans: what
/// merging the bytes into each span gives, without parsing or re-encoding anything else.
/// Several inserts for one span are appended in the order given.
#[pyfunction]
pub fn splice<'py>(py: Python<'py>, wire: &[u8], inserts: Vec<(usize, Vec<u8>)>) -> PyResult<Bound<'py, PyBytes>> {
    if inserts.is_empty() {
        return Ok(PyBytes::new(py, wire));
    }
    let lay = layout(wire).map_err(py_err)?;
    let mut marks: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut extra = 0;
    for (index, bytes) in inserts {
        let at = lay.spans.get(index).ok_or_else(|| {
            pyo3::exceptions::PyIndexError::new_err(format!("span index {index} out of range ({} spans)", lay.spans.len()))
        })?;
        extra += bytes.len();
        marks.entry(at.start).or_default().extend_from_slice(&bytes);
    }
    let mut out = Vec::with_capacity(wire.len() + extra + 64 * marks.len());
    rewrite(wire, 0, wire.len(), 0, &Marks(marks), &mut out).map_err(py_err)?;
    Ok(PyBytes::new(py, &out))
}
