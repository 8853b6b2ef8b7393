//! agentdbg's compiled hot path: per-span work over an OTLP ExportTraceServiceRequest's wire
//! bytes, one walk per batch, handing Python whole columns (docs/native.md says why and how).
//!
//! Every entry point takes bytes the protobuf runtime has already accepted, but none trusts
//! them: every read is bounds-checked and a malformed input is a `ValueError`, never a crash.
//! PyO3 turns a panic into a Python exception at the boundary (its own catch_unwind), and the
//! crate is built with `panic = "unwind"` so that stays true.

mod columns;
mod convert;
mod genai;
mod otlp;
mod wire;

use pyo3::prelude::*;

#[pymodule]
fn agentdbg_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(columns::columns, m)?)?;
    m.add_function(wrap_pyfunction!(columns::attribute_pass, m)?)?;
    m.add_function(wrap_pyfunction!(columns::nested, m)?)?;
    m.add_function(wrap_pyfunction!(genai::splice, m)?)?;
    m.add_class::<genai::Picker>()?;
    m.add_function(wrap_pyfunction!(format_double, m)?)?;
    Ok(())
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` (the text of a double attribute).
#[pyfunction]
fn format_double(value: f64) -> String {
    convert::format_double(value)
}
