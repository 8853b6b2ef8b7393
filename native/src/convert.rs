//! AnyValue to Python values and to text, the way pipeline/pdata/anyvalue.py defines them
//! (otelcol's `AsRaw` / `AsString`): strings as they are, ints in decimal, doubles in shortest
//! fixed notation, bools `true`/`false`, bytes base64, arrays and kvlists as compact JSON.
//! The JSON of an array or kvlist is written by orjson itself, called from here: those values
//! are rare, and one writer means the text is the same byte for byte as everywhere else.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString};
use rustc_hash::FxHashMap;

use crate::otlp::{any_value, check_depth, items, key_value, Any};
use crate::wire::WireError;

pub fn py_err(e: WireError) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(e.0)
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: Rust's `Display` of an f64 is the shortest
/// round-trip digits without an exponent, which is that, apart from NaN and the infinities.
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".to_owned() } else { "-Inf".to_owned() }
    } else {
        format!("{value}")
    }
}

/// One Python str per distinct key or repeated text in a call: the dicts of a batch share them.
pub struct Strings<'py> {
    py: Python<'py>,
    cache: FxHashMap<Vec<u8>, Bound<'py, PyString>>,
}

/// Values up to this many bytes are looked up in `Strings` (model names, operations, statuses
/// repeat across a batch); longer ones (prompts, messages) rarely repeat and are made each time.
const SHARED_TEXT: usize = 48;

impl<'py> Strings<'py> {
    pub fn new(py: Python<'py>) -> Self {
        Strings { py, cache: FxHashMap::default() }
    }

    /// A value's text: shared when short, new otherwise.
    pub fn value(&mut self, text: &str) -> Bound<'py, PyString> {
        if text.len() <= SHARED_TEXT {
            self.get(text.as_bytes())
        } else {
            PyString::new(self.py, text)
        }
    }

    /// `bytes` must be UTF-8 (every caller passes text the wire walk checked).
    pub fn get(&mut self, bytes: &[u8]) -> Bound<'py, PyString> {
        if let Some(found) = self.cache.get(bytes) {
            return found.clone();
        }
        let text = std::str::from_utf8(bytes).unwrap_or("");
        let value = PyString::new(self.py, text);
        if self.cache.len() < 65_536 {
            self.cache.insert(bytes.to_vec(), value.clone());
        }
        value
    }
}

/// How bytes become Python: as bytes (the typed value of a top-level attribute) or as base64
/// text (inside arrays and kvlists, and in every text form).
#[derive(Clone, Copy, PartialEq)]
pub enum BytesAs {
    Bytes,
    Base64,
}

/// The Python value of an AnyValue (anyvalue.py `any_value_typed`, or `any_value_raw` with Base64).
pub fn python<'py>(py: Python<'py>, data: &[u8], value: &Any, bytes_as: BytesAs, depth: usize)
                   -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Any::Empty => py.None().into_bound(py),
        Any::Str(s) => PyString::new(py, s).into_any(),
        Any::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Any::Int(i) => i.into_pyobject(py)?.into_any(),
        Any::Double(d) => PyFloat::new(py, *d).into_any(),
        Any::Bytes(b) if bytes_as == BytesAs::Bytes => PyBytes::new(py, b).into_any(),
        Any::Bytes(b) => PyString::new(py, &STANDARD.encode(b)).into_any(),
        Any::Array(ranges) => raw_array(py, data, ranges, depth)?.into_any(),
        Any::Kvlist(ranges) => raw_kvlist(py, data, ranges, depth)?.into_any(),
    })
}

fn raw_array<'py>(py: Python<'py>, data: &[u8], ranges: &[(usize, usize)], depth: usize) -> PyResult<Bound<'py, PyList>> {
    check_depth(depth, ranges.first().map_or(0, |r| r.0)).map_err(py_err)?;
    let list = PyList::empty(py);
    for (s, e) in items(data, ranges).map_err(py_err)? {
        let item = any_value(data, &[(s, e)]).map_err(py_err)?;
        list.append(python(py, data, &item, BytesAs::Base64, depth + 1)?)?;
    }
    Ok(list)
}

fn raw_kvlist<'py>(py: Python<'py>, data: &[u8], ranges: &[(usize, usize)], depth: usize) -> PyResult<Bound<'py, PyDict>> {
    check_depth(depth, ranges.first().map_or(0, |r| r.0)).map_err(py_err)?;
    let dict = PyDict::new(py);
    for (s, e) in items(data, ranges).map_err(py_err)? {
        let kv = key_value(data, s, e).map_err(py_err)?;
        let item = any_value(data, &kv.value).map_err(py_err)?;
        let key = std::str::from_utf8(kv.key).unwrap_or("");
        dict.set_item(key, python(py, data, &item, BytesAs::Base64, depth + 1)?)?;
    }
    Ok(dict)
}

/// The text ClickHouse's `Map(String, String)` stores for a value (anyvalue.py `any_value_text`).
pub fn text<'py>(py: Python<'py>, data: &[u8], value: &Any, strings: &mut Strings<'py>) -> PyResult<Bound<'py, PyString>> {
    Ok(match value {
        Any::Empty => strings.get(b""),
        Any::Str(s) => strings.value(s),
        Any::Bool(true) => strings.get(b"true"),
        Any::Bool(false) => strings.get(b"false"),
        Any::Int(i) => PyString::new(py, &i.to_string()),
        Any::Double(d) => PyString::new(py, &format_double(*d)),
        Any::Bytes(b) => PyString::new(py, &STANDARD.encode(b)),
        Any::Array(_) | Any::Kvlist(_) => json(py, python(py, data, value, BytesAs::Base64, 0)?, matches!(value, Any::Kvlist(_)))?,
    })
}

fn json<'py>(py: Python<'py>, raw: Bound<'py, PyAny>, sort_keys: bool) -> PyResult<Bound<'py, PyString>> {
    let orjson = py.import("orjson")?;
    let encoded = if sort_keys {
        // dumps(obj, default, option): orjson's own argument parsing takes `option` positionally here.
        let option = orjson.getattr("OPT_SORT_KEYS")?;
        orjson.getattr("dumps")?.call1((raw, py.None(), option))?
    } else {
        orjson.getattr("dumps")?.call1((raw,))?
    };
    Ok(encoded.call_method0("decode")?.cast_into::<PyString>()?)
}

/// `{key: text}` of a repeated KeyValue (later duplicates win), as anyvalue.py `attribute_map`.
pub fn attribute_map<'py>(py: Python<'py>, data: &[u8], kvs: &[(usize, usize)], strings: &mut Strings<'py>)
                          -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for &(s, e) in kvs {
        let kv = key_value(data, s, e).map_err(py_err)?;
        let value = any_value(data, &kv.value).map_err(py_err)?;
        dict.set_item(strings.get(kv.key), text(py, data, &value, strings)?)?;
    }
    Ok(dict)
}
