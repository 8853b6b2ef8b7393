//! `SpanColumns`' per-span work: the eager columns, the attribute pass and the nested columns
//! (events, links), each one walk over the batch's bytes that hands Python whole lists.

use std::collections::HashSet;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use rustc_hash::FxHashMap;

use crate::convert::{attribute_map, py_err, python, text, BytesAs, Strings};
use crate::otlp::{self, any_value, key_value, layout, Any};

const SERVICE_NAME: &[u8] = b"service.name";

fn list<'py>(py: Python<'py>, items: Vec<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyList::new(py, items)?.into_any())
}

fn ints<'py, T: IntoPyObject<'py> + Copy>(py: Python<'py>, values: &[T]) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyList::new(py, values.iter().copied())?.into_any())
}

/// The service name of a resource: its first `service.name` attribute, as text.
fn service<'py>(py: Python<'py>, data: &[u8], kvs: &[(usize, usize)], strings: &mut Strings<'py>)
                -> PyResult<Bound<'py, PyString>> {
    for &(s, e) in kvs {
        let kv = key_value(data, s, e).map_err(py_err)?;
        if kv.key == SERVICE_NAME {
            return text(py, data, &any_value(data, &kv.value).map_err(py_err)?, strings);
        }
    }
    Ok(strings.get(b""))
}

/// The eager columns (spans.py `SpanColumns.build`), in this order: trace_id, span_id,
/// parent_span_id, trace_state, name, kind, start_ns, end_ns, duration_ns, status_code,
/// status_message, service, resource_index, scope_name, scope_version, resource_services,
/// resource_starts, resource_attribute_maps.
#[pyfunction]
pub fn columns<'py>(py: Python<'py>, wire: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    let data = wire;
    let lay = layout(data).map_err(py_err)?;
    let mut strings = Strings::new(py);
    let n = lay.spans.len();
    let mut services = Vec::with_capacity(lay.resources.len());
    let mut resource_maps = Vec::with_capacity(lay.resources.len());
    for ranges in &lay.resources {
        let kvs = otlp::resource_attributes(data, ranges).map_err(py_err)?;
        services.push(service(py, data, &kvs, &mut strings)?);
        resource_maps.push(attribute_map(py, data, &kvs, &mut strings)?.into_any());
    }
    let mut scopes = Vec::with_capacity(lay.scopes.len());
    for scope in &lay.scopes {
        let (name, version) = otlp::scope(data, &scope.ranges).map_err(py_err)?;
        scopes.push((strings.get(name.as_bytes()), strings.get(version.as_bytes())));
    }
    let mut c: [Vec<Bound<'py, PyAny>>; 9] = Default::default();
    let (mut kind, mut start, mut end, mut code) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut duration: Vec<i128> = Vec::with_capacity(n);
    let mut resource_index = Vec::with_capacity(n);
    let mut s = otlp::Span::default();
    for at in &lay.spans {
        otlp::read_span(data, at.start, at.end, &mut s).map_err(py_err)?;
        let (status_code, status_message) = otlp::status(data, &s.status).map_err(py_err)?;
        let resource = lay.scopes[at.scope].resource;
        c[0].push(PyBytes::new(py, s.trace_id).into_any());
        c[1].push(PyBytes::new(py, s.span_id).into_any());
        c[2].push(PyBytes::new(py, s.parent_span_id).into_any());
        c[3].push(strings.get(s.trace_state.as_bytes()).into_any());
        c[4].push(strings.get(s.name.as_bytes()).into_any());
        c[5].push(strings.get(status_message.as_bytes()).into_any());
        c[6].push(services[resource].clone().into_any());
        c[7].push(scopes[at.scope].0.clone().into_any());
        c[8].push(scopes[at.scope].1.clone().into_any());
        kind.push(s.kind);
        start.push(s.start);
        end.push(s.end);
        duration.push(i128::from(s.end) - i128::from(s.start));
        code.push(status_code);
        resource_index.push(resource);
    }
    let [trace_id, span_id, parent, trace_state, name, status_message, service_col, scope_name, scope_version] = c;
    let services: Vec<Bound<'py, PyAny>> = services.into_iter().map(Bound::into_any).collect();
    let parts: Vec<Bound<'py, PyAny>> = vec![
        list(py, trace_id)?, list(py, span_id)?, list(py, parent)?, list(py, trace_state)?, list(py, name)?,
        ints(py, &kind)?, ints(py, &start)?, ints(py, &end)?, ints(py, &duration)?, ints(py, &code)?,
        list(py, status_message)?, list(py, service_col)?, ints(py, &resource_index)?,
        list(py, scope_name)?, list(py, scope_version)?, list(py, services)?, ints(py, &lay.resource_starts)?,
        list(py, resource_maps)?,
    ];
    PyTuple::new(py, parts)
}

/// The attribute pass (spans.py `attribute_pass`): per span `{key: text}` when `maps` is true
/// (else None), and for each of `keys` `{span index: typed value}` of the spans that have it
/// (later duplicates of a key in one span win).
#[pyfunction]
pub fn attribute_pass<'py>(py: Python<'py>, wire: &[u8], keys: HashSet<String>, maps: bool)
                           -> PyResult<Bound<'py, PyTuple>> {
    let data = wire;
    let lay = layout(data).map_err(py_err)?;
    let mut strings = Strings::new(py);
    let rows: FxHashMap<&[u8], Bound<'py, PyDict>> = keys.iter().map(|k| (k.as_bytes(), PyDict::new(py))).collect();
    let mut out = Vec::with_capacity(if maps { lay.spans.len() } else { 0 });
    let mut s = otlp::Span::default();
    for (i, at) in lay.spans.iter().enumerate() {
        otlp::read_span(data, at.start, at.end, &mut s).map_err(py_err)?;
        let dict = if maps { Some(PyDict::new(py)) } else { None };
        for &(a, b) in &s.attributes {
            let kv = key_value(data, a, b).map_err(py_err)?;
            let row = rows.get(kv.key);
            if dict.is_none() && row.is_none() {
                continue;
            }
            let value = any_value(data, &kv.value).map_err(py_err)?;
            let mut shown = None;
            if let Some(dict) = &dict {
                let text = text(py, data, &value, &mut strings)?;
                dict.set_item(strings.get(kv.key), &text)?;
                shown = Some(text);
            }
            if let Some(row) = row {
                match (&value, shown) {
                    // A non-empty string is its own text: the map and the typed column share one str.
                    (Any::Str(s), Some(text)) if !s.is_empty() => row.set_item(i, text)?,
                    _ => row.set_item(i, python(py, data, &value, BytesAs::Bytes, 0)?)?,
                }
            }
        }
        if let Some(dict) = dict {
            out.push(dict.into_any());
        }
    }
    let found = PyDict::new(py);
    for key in &keys {
        found.set_item(key, &rows[key.as_bytes()])?;
    }
    let maps_out = if maps { list(py, out)? } else { py.None().into_bound(py) };
    PyTuple::new(py, [maps_out, found.into_any()])
}

/// The events and links columns (spans.py `EventColumns`, `LinkColumns`), in this order:
/// event times, names, attribute maps; link trace ids (hex), span ids (hex), trace states,
/// attribute maps. A span without events (links) has the shared empty tuple in each column.
#[pyfunction]
pub fn nested<'py>(py: Python<'py>, wire: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    let data = wire;
    let lay = layout(data).map_err(py_err)?;
    let mut strings = Strings::new(py);
    let empty = PyTuple::empty(py).into_any();
    let mut c: [Vec<Bound<'py, PyAny>>; 7] = Default::default();
    let mut s = otlp::Span::default();
    for at in &lay.spans {
        otlp::read_span(data, at.start, at.end, &mut s).map_err(py_err)?;
        if s.events.is_empty() {
            for column in c[..3].iter_mut() {
                column.push(empty.clone());
            }
        } else {
            let (mut times, mut names, mut attrs) = (Vec::new(), Vec::new(), Vec::new());
            for &(a, b) in &s.events {
                let (time, name, kvs) = otlp::event(data, a, b).map_err(py_err)?;
                times.push(time);
                names.push(strings.get(name.as_bytes()));
                attrs.push(attribute_map(py, data, &kvs, &mut strings)?);
            }
            c[0].push(ints(py, &times)?);
            c[1].push(PyList::new(py, names)?.into_any());
            c[2].push(PyList::new(py, attrs)?.into_any());
        }
        if s.links.is_empty() {
            for column in c[3..].iter_mut() {
                column.push(empty.clone());
            }
        } else {
            let mut parts: [Vec<Bound<'py, PyAny>>; 4] = Default::default();
            for &(a, b) in &s.links {
                let l = otlp::link(data, a, b).map_err(py_err)?;
                parts[0].push(PyString::new(py, &hex(l.trace_id)).into_any());
                parts[1].push(PyString::new(py, &hex(l.span_id)).into_any());
                parts[2].push(strings.get(l.trace_state.as_bytes()).into_any());
                parts[3].push(attribute_map(py, data, &l.attributes, &mut strings)?.into_any());
            }
            for (column, part) in c[3..].iter_mut().zip(parts) {
                column.push(list(py, part)?);
            }
        }
    }
    let parts: Vec<Bound<'py, PyAny>> = c.into_iter().map(|column| list(py, column)).collect::<PyResult<_>>()?;
    PyTuple::new(py, parts)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}
