//! Feather (Arrow IPC file) columns for the candle loader, without pyarrow.
//!
//! Importing pyarrow and reading a universe through it is most of a replay's run time; the candle
//! files are one plain layout (freqtrade's: a timestamp or int64 `date`, float64 prices, no nulls,
//! LZ4-compressed or not), which this reads straight from the file's bytes. Anything else (another
//! type, a null, a dictionary, ZSTD, a malformed file) gives None and the loader falls back to
//! pyarrow, which reads every file Arrow can and words every refusal.
//!
//! Format: `ARROW1`, the IPC messages, the footer (a flatbuffer: schema and record-batch blocks),
//! its length as i32 and `ARROW1` again (arrow/format/File.fbs, Message.fbs, Schema.fbs).

use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyList;

const MAGIC: &[u8] = b"ARROW1";

// Schema.fbs `Type` union tags and enum values this reader accepts.
const TYPE_INT: u8 = 2;
const TYPE_FLOAT: u8 = 3;
const TYPE_TIMESTAMP: u8 = 10;
const PRECISION_DOUBLE: i16 = 2;
// Message.fbs: the `MessageHeader` tag of a record batch, and `CompressionType.LZ4_FRAME`.
const HEADER_RECORD_BATCH: u8 = 3;
const CODEC_LZ4_FRAME: i8 = 0;

/// One column's values as the file stores them.
#[derive(Debug, PartialEq)]
pub enum Values {
    /// int64 values; `unit` is the timestamp's unit (`s`, `ms`, `us`, `ns`) or None for plain int64.
    Int { unit: Option<&'static str>, values: Vec<i64> },
    /// float64 values.
    Float(Vec<f64>),
}

/// A column: name and values (every column of a file has the same length).
pub type Column = (String, Values);

fn read<const N: usize>(buf: &[u8], pos: usize) -> Option<[u8; N]> {
    buf.get(pos..pos.checked_add(N)?)?.try_into().ok()
}
fn u16_at(buf: &[u8], pos: usize) -> Option<u16> {
    read::<2>(buf, pos).map(u16::from_le_bytes)
}
fn u32_at(buf: &[u8], pos: usize) -> Option<u32> {
    read::<4>(buf, pos).map(u32::from_le_bytes)
}
fn i32_at(buf: &[u8], pos: usize) -> Option<i32> {
    read::<4>(buf, pos).map(i32::from_le_bytes)
}
fn i64_at(buf: &[u8], pos: usize) -> Option<i64> {
    read::<8>(buf, pos).map(i64::from_le_bytes)
}
fn usize_at(buf: &[u8], pos: usize) -> Option<usize> {
    usize::try_from(i64_at(buf, pos)?).ok()
}

/// A flatbuffer table: every read is bounds-checked; a field the vtable leaves out is its default.
#[derive(Clone, Copy)]
struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Table<'a> {
    fn root(buf: &'a [u8]) -> Option<Self> {
        Self::at_offset(buf, 0)
    }

    /// The table a uoffset at `pos` points to.
    fn at_offset(buf: &'a [u8], pos: usize) -> Option<Self> {
        let pos = pos.checked_add(u32_at(buf, pos)? as usize)?;
        Some(Self { buf, pos })
    }

    /// Where field `i` is stored: `Some(None)` when the vtable leaves it out, None when the
    /// table itself is out of bounds.
    fn field(&self, i: usize) -> Option<Option<usize>> {
        let vtable =
            usize::try_from(i64::try_from(self.pos).ok()? - i64::from(i32_at(self.buf, self.pos)?)).ok()?;
        let vtable_len = usize::from(u16_at(self.buf, vtable)?);
        let slot = 4 + 2 * i;
        if slot + 2 > vtable_len {
            return Some(None);
        }
        match u16_at(self.buf, vtable + slot)? {
            0 => Some(None),
            off => Some(Some(self.pos + usize::from(off))),
        }
    }

    fn u8_or(&self, i: usize, default: u8) -> Option<u8> {
        self.field(i)?.map_or(Some(default), |p| self.buf.get(p).copied())
    }
    fn i16_or(&self, i: usize, default: i16) -> Option<i16> {
        self.field(i)?.map_or(Some(default), |p| read::<2>(self.buf, p).map(i16::from_le_bytes))
    }
    fn i32_or(&self, i: usize, default: i32) -> Option<i32> {
        self.field(i)?.map_or(Some(default), |p| i32_at(self.buf, p))
    }
    fn i64_or(&self, i: usize, default: i64) -> Option<i64> {
        self.field(i)?.map_or(Some(default), |p| i64_at(self.buf, p))
    }
    fn table(&self, i: usize) -> Option<Option<Table<'a>>> {
        match self.field(i)? {
            None => Some(None),
            Some(p) => Table::at_offset(self.buf, p).map(Some),
        }
    }
    /// A vector field: (position of element 0, length); an absent vector is empty.
    fn vector(&self, i: usize) -> Option<(usize, usize)> {
        match self.field(i)? {
            None => Some((0, 0)),
            Some(p) => {
                let start = p.checked_add(u32_at(self.buf, p)? as usize)?;
                Some((start + 4, u32_at(self.buf, start)? as usize))
            }
        }
    }
    fn string(&self, i: usize) -> Option<&'a str> {
        let (start, len) = self.vector(i)?;
        std::str::from_utf8(self.buf.get(start..start.checked_add(len)?)?).ok()
    }
    /// Element `j` of a vector of tables starting at `start`.
    fn table_in(&self, start: usize, j: usize) -> Option<Table<'a>> {
        Table::at_offset(self.buf, start.checked_add(4 * j)?)
    }
}

/// The type of a schema field this reader can decode, or None.
fn field_type(field: &Table<'_>) -> Option<Option<&'static str>> {
    if field.table(4)?.is_some() || field.vector(5)?.1 != 0 {
        return None; // dictionary-encoded, or nested
    }
    let kind = field.table(3)?;
    match field.u8_or(2, 0)? {
        TYPE_INT => {
            let t = kind?;
            (t.i32_or(0, 0)? == 64 && t.u8_or(1, 0)? == 1).then_some(Some("int64"))
        }
        TYPE_FLOAT => (kind?.i16_or(0, 0)? == PRECISION_DOUBLE).then_some(Some("double")),
        TYPE_TIMESTAMP => {
            let unit = ["s", "ms", "us", "ns"].get(usize::try_from(kind?.i16_or(0, 0)?).ok()?)?;
            Some(Some(unit))
        }
        _ => None,
    }
}

/// A buffer of the body, decompressed when the batch says so (an 8-byte uncompressed length, -1
/// for "stored as is", then one LZ4 frame).
fn buffer(body: &[u8], offset: usize, len: usize, lz4: bool) -> Option<Vec<u8>> {
    let raw = body.get(offset..offset.checked_add(len)?)?;
    if !lz4 || raw.is_empty() {
        return Some(raw.to_vec());
    }
    let size = i64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
    if size == -1 {
        return Some(raw[8..].to_vec());
    }
    let size = usize::try_from(size).ok()?;
    // LZ4 expands at most 255-fold: a larger claimed size is a damaged file, not an allocation.
    if size > raw.len().saturating_mul(255) {
        return None;
    }
    lz4_frame(&raw[8..], size)
}

/// An LZ4 frame of `size` bytes once decoded. Frames of independent blocks (what Arrow writes) are
/// decoded block by block straight into the output; others go through lz4_flex's frame reader,
/// which allocates and clears its buffers for every frame (most of the read time of a universe).
fn lz4_frame(frame: &[u8], size: usize) -> Option<Vec<u8>> {
    // Header: magic, FLG, BD, [content size: 8], [dictionary id: 4], header checksum.
    const MAGIC: u32 = 0x184D_2204;
    let flg = *frame.get(4)?;
    let independent = flg & 0x20 != 0;
    let (block_checksums, content_size, dict_id) = (flg & 0x10 != 0, flg & 0x08 != 0, flg & 0x01 != 0);
    if u32_at(frame, 0)? != MAGIC || flg >> 6 != 1 || !independent || dict_id {
        let mut out = Vec::with_capacity(size);
        let decoder = lz4_flex::frame::FrameDecoder::new(frame);
        std::io::Read::read_to_end(&mut std::io::Read::take(decoder, size as u64 + 1), &mut out).ok()?;
        return (out.len() == size).then_some(out);
    }
    let mut at = 7 + if content_size { 8 } else { 0 };
    let mut out = vec![0u8; size];
    let mut filled = 0usize;
    loop {
        let word = u32_at(frame, at)?;
        at += 4;
        if word == 0 {
            break; // end mark (a content checksum may follow: not checked, as Arrow's reader does not)
        }
        let len = (word & 0x7FFF_FFFF) as usize;
        let block = frame.get(at..at.checked_add(len)?)?;
        let rest = out.get_mut(filled..)?;
        if word & 0x8000_0000 != 0 {
            rest.get_mut(..len)?.copy_from_slice(block);
            filled += len;
        } else {
            filled += lz4_flex::block::decompress_into(block, rest).ok()?;
        }
        at += len + if block_checksums { 4 } else { 0 };
    }
    (filled == size).then_some(out)
}

/// Every column of an Arrow IPC file in the plain candle layout, or None (see the module doc).
pub fn read_columns(file: &[u8]) -> Option<Vec<Column>> {
    let n = file.len();
    if n < 2 * MAGIC.len() + 6 || !file.starts_with(MAGIC) || !file.ends_with(MAGIC) {
        return None;
    }
    let footer_len = usize::try_from(i32_at(file, n - 10)?).ok()?;
    let footer = Table::root(file.get(n.checked_sub(10 + footer_len)?..n - 10)?)?;
    let schema = footer.table(1)??;
    if schema.i16_or(0, 0)? != 0 || footer.vector(2)?.1 != 0 {
        return None; // big-endian, or dictionaries
    }
    let (fields_at, n_fields) = schema.vector(1)?;
    if n_fields > footer.buf.len() / 4 {
        return None; // more fields than the footer has room for: damaged
    }
    let mut kinds = Vec::with_capacity(n_fields);
    for j in 0..n_fields {
        let field = schema.table_in(fields_at, j)?;
        kinds.push((field.string(0)?.to_owned(), field_type(&field)??));
    }
    let mut data: Vec<Vec<u8>> = vec![Vec::new(); n_fields];
    let mut rows = 0usize;
    let (blocks_at, n_blocks) = footer.vector(3)?;
    for b in 0..n_blocks {
        // Block: offset i64, metaDataLength i32 (+4 padding), bodyLength i64.
        let block = blocks_at.checked_add(24 * b)?;
        let (offset, meta_len) =
            (usize_at(footer.buf, block)?, usize::try_from(i32_at(footer.buf, block + 8)?).ok()?);
        let body_len = usize_at(footer.buf, block + 16)?;
        // A message: 0xFFFFFFFF, its flatbuffer's length (i32), the flatbuffer (older files omit the marker).
        let flat = if u32_at(file, offset)? == u32::MAX { offset + 8 } else { offset + 4 };
        let message = Table::root(file.get(flat..offset.checked_add(meta_len)?)?)?;
        if message.u8_or(1, 0)? != HEADER_RECORD_BATCH {
            return None;
        }
        let batch = message.table(2)??;
        let body = file.get(offset + meta_len..(offset + meta_len).checked_add(body_len)?)?;
        let lz4 = match batch.table(3)? {
            None => false,
            Some(c) if c.u8_or(0, 0)? as i8 == CODEC_LZ4_FRAME && c.u8_or(1, 0)? == 0 => true,
            Some(_) => return None,
        };
        let length = usize::try_from(batch.i64_or(0, 0)?).ok()?;
        let (nodes_at, n_nodes) = batch.vector(1)?;
        let (buffers_at, n_buffers) = batch.vector(2)?;
        if n_nodes != n_fields || n_buffers != 2 * n_fields {
            return None;
        }
        for (k, column) in data.iter_mut().enumerate() {
            // FieldNode: length i64, null_count i64. Buffer: offset i64, length i64 (validity, values).
            let node = nodes_at + 16 * k;
            if usize_at(batch.buf, node)? != length || i64_at(batch.buf, node + 8)? != 0 {
                return None;
            }
            let at = buffers_at + 16 * (2 * k + 1);
            let values = buffer(body, usize_at(batch.buf, at)?, usize_at(batch.buf, at + 8)?, lz4)?;
            column.extend_from_slice(values.get(..length.checked_mul(8)?)?);
        }
        rows = rows.checked_add(length)?;
    }
    let columns = kinds.into_iter().zip(data).map(|((name, kind), bytes)| {
        let words = bytes.chunks_exact(8).map(|w| <[u8; 8]>::try_from(w).expect("8 bytes"));
        let values = match kind {
            "double" => Values::Float(words.map(f64::from_le_bytes).collect()),
            "int64" => Values::Int { unit: None, values: words.map(i64::from_le_bytes).collect() },
            unit => Values::Int { unit: Some(unit), values: words.map(i64::from_le_bytes).collect() },
        };
        (name, values)
    });
    let columns: Vec<Column> = columns.collect();
    debug_assert!(columns.iter().all(|(_, v)| match v {
        Values::Float(x) => x.len() == rows,
        Values::Int { values, .. } => values.len() == rows,
    }));
    Some(columns)
}

/// The columns of a feather file's bytes as `[(name, type, values)]` — type `"double"`, `"int64"`
/// or `"timestamp[s|ms|us|ns]"`, values a float64 or int64 array — or None when the file is not in
/// the plain candle layout (then read it with pyarrow, which explains what is wrong, if anything).
#[pyfunction]
fn feather_columns<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Option<Bound<'py, PyList>>> {
    let Some(columns) = py.detach(|| read_columns(data)) else { return Ok(None) };
    let out = PyList::empty(py);
    for (name, values) in columns {
        match values {
            Values::Float(v) => out.append((name, "double", v.into_pyarray(py)))?,
            Values::Int { unit: None, values } => out.append((name, "int64", values.into_pyarray(py)))?,
            Values::Int { unit: Some(u), values } => {
                out.append((name, format!("timestamp[{u}]"), values.into_pyarray(py)))?
            }
        }
    }
    Ok(Some(out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(feather_columns, m)?)
}
