//! The protobuf wire format: varints, field framing, and a walk over the fields of a message.
//!
//! A message is a run of fields; each starts with a varint tag `(number << 3) | wire type`.
//! Wire type 0 is a varint, 1 eight fixed bytes, 5 four fixed bytes, 2 a varint length and that
//! many bytes (strings, bytes, nested messages). Types 3 and 4 open and close a group: OTLP has
//! none, but the protobuf runtime the receivers parse with skips unknown groups, so this walk
//! does too (an unknown field is never a reason to refuse a batch the runtime accepted).
//! Every read is bounds-checked and returns an error instead of panicking.

use std::fmt;

pub const MAX_DEPTH: usize = 100; // the protobuf runtime's own nesting limit

#[derive(Debug)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, WireError>;

pub fn err<T>(what: &str, pos: usize) -> Result<T> {
    Err(WireError(format!("{what} at byte {pos}")))
}

/// One field's value, as its wire type frames it (positions index the batch's bytes).
#[derive(Clone, Copy, Debug)]
pub enum Field {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Bytes(usize, usize),
}

pub fn read_varint(data: &[u8], mut pos: usize) -> Result<(u64, usize)> {
    let start = pos;
    let mut result: u64 = 0;
    let mut shift = 0u32;
    while pos < data.len() {
        let byte = data[pos];
        pos += 1;
        if shift < 64 {
            result |= u64::from(byte & 0x7F) << shift;
        }
        if byte < 0x80 {
            return Ok((result, pos));
        }
        shift += 7;
        if shift >= 70 {
            return err("protobuf varint longer than 10 bytes", start);
        }
    }
    err("truncated protobuf varint", start)
}

fn fixed(data: &[u8], pos: usize, size: usize) -> Result<u64> {
    let end = pos.checked_add(size).filter(|&e| e <= data.len());
    match end {
        Some(end) => {
            let mut buf = [0u8; 8];
            buf[..size].copy_from_slice(&data[pos..end]);
            Ok(u64::from_le_bytes(buf))
        }
        None => err("truncated fixed-width protobuf value", pos),
    }
}

/// Skip a group whose start tag (field `number`) ended at `pos`; returns the position after its end tag.
fn skip_group(data: &[u8], mut pos: usize, number: u64, end: usize, depth: usize) -> Result<usize> {
    if depth > MAX_DEPTH {
        return err("protobuf groups nested too deeply", pos);
    }
    while pos < end {
        let (tag, next) = read_varint(data, pos)?;
        pos = next;
        let wire_type = tag & 7;
        if wire_type == 4 {
            if tag >> 3 == number {
                return Ok(pos);
            }
            return err("mismatched protobuf end-group tag", pos);
        }
        pos = skip_value(data, pos, tag, end, depth + 1)?;
    }
    err("unterminated protobuf group", pos)
}

fn skip_value(data: &[u8], pos: usize, tag: u64, end: usize, depth: usize) -> Result<usize> {
    Ok(read_field(data, pos, tag, end, depth)?.1)
}

/// The value of the field whose tag is `tag`, starting at `pos`, and where it ends. A group
/// comes back as None (skipped).
fn read_field(data: &[u8], pos: usize, tag: u64, end: usize, depth: usize) -> Result<(Option<Field>, usize)> {
    match tag & 7 {
        0 => {
            let (value, next) = read_varint(data, pos)?;
            Ok((Some(Field::Varint(value)), next))
        }
        1 => Ok((Some(Field::Fixed64(fixed(data, pos, 8)?)), pos + 8)),
        5 => {
            fixed(data, pos, 4)?;
            Ok((Some(Field::Fixed32), pos + 4))
        }
        2 => {
            let (length, start) = read_varint(data, pos)?;
            let stop = usize::try_from(length).ok().and_then(|l| start.checked_add(l));
            match stop {
                Some(stop) if stop <= end => Ok((Some(Field::Bytes(start, stop)), stop)),
                _ => err("truncated protobuf field", pos),
            }
        }
        3 => Ok((None, skip_group(data, pos, tag >> 3, end, depth)?)),
        _ => err("unexpected protobuf wire type", pos),
    }
}

/// Call `each(number, field, tag start, field end)` for every field of `data[start..end]`, in
/// order; a group's field is None.
pub fn walk_raw<F>(data: &[u8], start: usize, end: usize, mut each: F) -> Result<()>
where
    F: FnMut(u64, Option<Field>, usize, usize) -> Result<()>,
{
    let mut pos = start;
    while pos < end {
        let (tag, next) = read_varint(data, pos)?;
        if tag >> 3 == 0 {
            return err("protobuf field number 0", pos);
        }
        let (field, next) = read_field(data, next, tag, end, 0)?;
        each(tag >> 3, field, pos, next)?;
        pos = next;
    }
    Ok(())
}

/// Call `each(number, field)` for every field of `data[start..end]`, in order.
pub fn walk<F>(data: &[u8], start: usize, end: usize, mut each: F) -> Result<()>
where
    F: FnMut(u64, Field) -> Result<()>,
{
    walk_raw(data, start, end, |number, field, _, _| match field {
        Some(field) => each(number, field),
        None => Ok(()),
    })
}

/// A singular message field that occurs more than once is merged by the runtime: its value is
/// every occurrence read in order. `Ranges` are those occurrences.
pub type Ranges = Vec<(usize, usize)>;

/// `walk` over every range of a merged message, in order.
pub fn walk_all<F>(data: &[u8], ranges: &[(usize, usize)], mut each: F) -> Result<()>
where
    F: FnMut(u64, Field) -> Result<()>,
{
    for &(start, end) in ranges {
        walk(data, start, end, &mut each)?;
    }
    Ok(())
}

/// The bytes of a string field, checked to be UTF-8 (the runtime refuses a batch otherwise).
pub fn text(data: &[u8], start: usize, end: usize) -> Result<&str> {
    std::str::from_utf8(&data[start..end]).map_err(|_| WireError(format!("invalid UTF-8 in a string field at byte {start}")))
}

pub fn varint_bytes(mut number: u64, out: &mut Vec<u8>) {
    while number > 0x7F {
        out.push((number as u8 & 0x7F) | 0x80);
        number >>= 7;
    }
    out.push(number as u8);
}
