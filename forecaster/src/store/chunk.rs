//! Compressed runs of regularly spaced values.
//!
//! A series' history is resampled to a fixed step, so timestamps are implicit: a chunk stores its
//! first slot's timestamp and then one value per step. While a chunk fills, values are compressed
//! with the XOR scheme of Facebook's Gorilla paper (Pelkonen et al., VLDB 2015): a repeated value
//! costs one bit, a value that shares its leading and trailing zero bits with the previous XOR
//! costs two bits plus the meaningful bits. When it is sealed, the chunk is re-encoded as decimal
//! integers ([`super::decimal`]) if that is smaller, which it is several times over for values
//! that were written with a few decimal places. Both are lossless. A missing step is stored as
//! NaN, which ingest never accepts as a value.

/// Slots per chunk: four hours at the default one-minute step.
pub(crate) const CHUNK_SLOTS: u32 = 240;

/// Append-only bit buffer, most significant bit first.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct BitBuf {
    #[serde(with = "crate::store::durable::byte_vec")]
    pub(super) bytes: Vec<u8>,
    /// Bits used in the last byte (0 means the last byte is full or there is none).
    tail_bits: u8,
}

impl BitBuf {
    fn push_bit(&mut self, bit: bool) {
        if self.tail_bits == 0 {
            self.bytes.push(0);
        }
        if bit && let Some(last) = self.bytes.last_mut() {
            *last |= 0x80 >> self.tail_bits;
        }
        self.tail_bits = (self.tail_bits + 1) % 8;
    }

    /// Pushes the low `n` bits of `value` (`n` at most 64), most significant first.
    pub(super) fn push_bits(&mut self, value: u64, n: u32) {
        let mut remaining = n;
        while remaining > 0 {
            if self.tail_bits == 0 {
                self.bytes.push(0);
            }
            let free = 8 - u32::from(self.tail_bits);
            let take = free.min(remaining);
            let shift = remaining - take;
            let chunk = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (free - take);
            }
            self.tail_bits = ((u32::from(self.tail_bits) + take) % 8) as u8;
            remaining -= take;
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, n: u32) -> Option<u64> {
        let end = self.pos.checked_add(n as usize)?;
        if end > self.bytes.len() * 8 {
            return None;
        }
        let out = bits_at(self.bytes, self.pos, n);
        self.pos = end;
        Some(out)
    }
}

/// The `width` bits (at most 64) starting `pos` bits into `bytes`, which must hold them.
pub(super) fn bits_at(bytes: &[u8], pos: usize, width: u32) -> u64 {
    if width == 0 {
        return 0;
    }
    let first = pos / 8;
    let skip = (pos % 8) as u32;
    let n = (skip + width).div_ceil(8) as usize;
    let window = bytes[first..first + n]
        .iter()
        .fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
    let shift = n as u32 * 8 - skip - width;
    ((window >> shift) & ((1u128 << width) - 1)) as u64
}

/// Up to [`CHUNK_SLOTS`] consecutive step values starting at `start_ms`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Chunk {
    start_ms: i64,
    len: u32,
    body: Body,
}

/// A chunk's values: XOR-compressed while it fills, then in whichever of the XOR and the
/// decimal encodings ([`super::decimal`]) is smaller once it is sealed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Body {
    Open(XorWriter),
    Xor(#[serde(with = "crate::store::durable::byte_vec")] Vec<u8>),
    Decimal(#[serde(with = "crate::store::durable::byte_vec")] Vec<u8>),
}

/// The XOR encoder: its bits and what the next value is compared with.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct XorWriter {
    bits: BitBuf,
    prev: u64,
    leading: u8,
    trailing: u8,
}

impl XorWriter {
    fn new() -> Self {
        Self {
            leading: u8::MAX,
            ..Self::default()
        }
    }

    fn push(&mut self, value: f64, first: bool) {
        let v = value.to_bits();
        if first {
            self.bits.push_bits(v, 64);
        } else {
            let xor = v ^ self.prev;
            if xor == 0 {
                self.bits.push_bit(false);
            } else {
                self.bits.push_bit(true);
                let leading = (xor.leading_zeros() as u8).min(31);
                let trailing = xor.trailing_zeros() as u8;
                if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
                    self.bits.push_bit(false);
                    let meaningful = 64 - u32::from(self.leading) - u32::from(self.trailing);
                    self.bits.push_bits(xor >> self.trailing, meaningful);
                } else {
                    self.bits.push_bit(true);
                    let meaningful = 64 - u32::from(leading) - u32::from(trailing);
                    self.bits.push_bits(u64::from(leading), 5);
                    // 64 meaningful bits do not fit in 6 bits; 0 stands for 64.
                    self.bits.push_bits(u64::from(meaningful % 64), 6);
                    self.bits.push_bits(xor >> trailing, meaningful);
                    self.leading = leading;
                    self.trailing = trailing;
                }
            }
        }
        self.prev = v;
    }
}

impl Chunk {
    pub(crate) fn new(start_ms: i64) -> Self {
        Self {
            start_ms,
            len: 0,
            body: Body::Open(XorWriter::new()),
        }
    }

    pub(crate) fn start_ms(&self) -> i64 {
        self.start_ms
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len >= CHUNK_SLOTS
    }

    /// Timestamp one step past the last slot.
    pub(crate) fn end_ms(&self, step_ms: i64) -> i64 {
        self.start_ms + i64::from(self.len) * step_ms
    }

    /// Appends the next slot's value (NaN for a missing step).
    pub(crate) fn push(&mut self, value: f64) {
        if !matches!(self.body, Body::Open(_)) {
            // Sealed chunks are full and never appended to; should one be, it is reopened.
            let values: Vec<f64> = self.values().collect();
            let mut writer = XorWriter::new();
            for (i, &v) in values.iter().enumerate() {
                writer.push(v, i == 0);
            }
            self.body = Body::Open(writer);
        }
        if let Body::Open(writer) = &mut self.body {
            writer.push(value, self.len == 0);
            self.len += 1;
        }
    }

    /// Completes the chunk: keeps the smaller of its XOR bits and its decimal encoding, and
    /// releases spare capacity.
    pub(crate) fn seal(&mut self) {
        let Body::Open(writer) = &mut self.body else {
            return;
        };
        let xor = std::mem::take(&mut writer.bits.bytes);
        let values: Vec<f64> = xor_values(&xor, self.len).collect();
        self.body = match super::decimal::encode(&values, xor.len()) {
            Some(decimal) => Body::Decimal(decimal),
            None => Body::Xor(xor),
        };
        if let Body::Xor(bytes) | Body::Decimal(bytes) = &mut self.body {
            bytes.shrink_to_fit();
        }
    }

    /// Whether the chunk's length is possible and its bytes decode to it (a chunk read from
    /// disk is checked once, before anything sizes a buffer by its length).
    pub(crate) fn is_intact(&self) -> bool {
        if self.len > CHUNK_SLOTS {
            return false;
        }
        match &self.body {
            Body::Open(w) => xor_values(&w.bits.bytes, self.len).count() == self.len as usize,
            Body::Xor(bytes) => xor_values(bytes, self.len).count() == self.len as usize,
            Body::Decimal(bytes) => super::decimal::decode(bytes, self.len as usize).is_some(),
        }
    }

    /// Heap bytes held by the chunk.
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.body {
            Body::Open(w) => w.bits.bytes.capacity(),
            Body::Xor(bytes) | Body::Decimal(bytes) => bytes.capacity(),
        }
    }

    /// The values in slot order (NaN for missing steps).
    pub(crate) fn values(&self) -> ChunkValues<'_> {
        match &self.body {
            Body::Open(w) => ChunkValues::Xor(xor_values(&w.bits.bytes, self.len)),
            Body::Xor(bytes) => ChunkValues::Xor(xor_values(bytes, self.len)),
            Body::Decimal(bytes) => ChunkValues::Decoded(
                super::decimal::decode(bytes, self.len as usize)
                    .unwrap_or_default()
                    .into_iter(),
            ),
        }
    }
}

fn xor_values(bytes: &[u8], len: u32) -> XorValues<'_> {
    XorValues {
        reader: BitReader { bytes, pos: 0 },
        remaining: len,
        first: true,
        prev: 0,
        leading: 0,
        trailing: 0,
    }
}

/// Iterator over a chunk's values.
pub(crate) enum ChunkValues<'a> {
    Xor(XorValues<'a>),
    Decoded(std::vec::IntoIter<f64>),
}

impl Iterator for ChunkValues<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        match self {
            Self::Xor(x) => x.next(),
            Self::Decoded(d) => d.next(),
        }
    }
}

/// Decoder of the XOR scheme.
pub(crate) struct XorValues<'a> {
    reader: BitReader<'a>,
    remaining: u32,
    first: bool,
    prev: u64,
    leading: u32,
    trailing: u32,
}

impl Iterator for XorValues<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        if self.first {
            self.first = false;
            self.prev = self.reader.read_bits(64)?;
            return Some(f64::from_bits(self.prev));
        }
        if self.reader.read_bit()? {
            if self.reader.read_bit()? {
                self.leading = self.reader.read_bits(5)? as u32;
                let mut meaningful = self.reader.read_bits(6)? as u32;
                if meaningful == 0 {
                    meaningful = 64;
                }
                self.trailing = 64u32.saturating_sub(self.leading + meaningful);
            }
            let meaningful = 64 - self.leading - self.trailing;
            let bits = self.reader.read_bits(meaningful)?;
            self.prev ^= bits << self.trailing;
        }
        Some(f64::from_bits(self.prev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[f64]) -> Vec<f64> {
        let mut c = Chunk::new(0);
        for &v in values {
            c.push(v);
        }
        assert_eq!(c.len() as usize, values.len());
        c.values().collect()
    }

    fn same_bits(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn round_trips_exactly() {
        let cases: Vec<Vec<f64>> = vec![
            vec![],
            vec![1.0],
            vec![0.0; 240],
            (0..240).map(|i| i as f64 * 0.1).collect(),
            (0..240).map(|i| (i as f64 / 10.0).sin() * 1e9).collect(),
            vec![
                f64::NAN,
                1.0,
                f64::NAN,
                f64::NAN,
                -0.0,
                1e308,
                f64::MIN_POSITIVE,
                -1e-308,
            ],
            vec![5e11, 5e11 + 4096.0, 5e11 + 8192.0, 1.0, u64::MAX as f64],
            // XOR with 64 meaningful bits (sign flip plus low bit).
            vec![f64::from_bits(1), f64::from_bits(0x8000_0000_0000_0000)],
        ];
        for values in cases {
            let got = round_trip(&values);
            assert!(same_bits(&got, &values), "{values:?} came back as {got:?}");
        }
    }

    #[test]
    fn constant_values_cost_almost_nothing() {
        let mut c = Chunk::new(0);
        for _ in 0..CHUNK_SLOTS {
            c.push(42.0);
        }
        // 64 bits for the first value, then one bit per repeat.
        let Body::Open(w) = &c.body else {
            panic!("a chunk being filled is open");
        };
        assert_eq!(
            w.bits.bytes.len(),
            (64 + CHUNK_SLOTS as usize - 1).div_ceil(8)
        );
        assert!(c.is_full());
        c.seal();
        // Sealed as decimal integers: the first value, then a width of zero per block.
        assert!(c.heap_bytes() < 32, "{} bytes", c.heap_bytes());
        assert!(c.values().all(|v| v == 42.0));
    }

    #[test]
    fn sealing_keeps_the_smaller_encoding_and_every_bit() {
        let gauge: Vec<f64> = (0..CHUNK_SLOTS)
            .map(|i| f64::from(2000 + (i * 7919) % 1000) / 100.0)
            .collect();
        let noise: Vec<f64> = (0..CHUNK_SLOTS)
            .map(|i| (f64::from(i) * 0.731).sin() * 1e3)
            .collect();
        for (values, decimal) in [(&gauge, true), (&noise, false)] {
            let mut c = Chunk::new(0);
            for &v in values {
                c.push(v);
            }
            let open = c.heap_bytes();
            c.seal();
            assert_eq!(matches!(c.body, Body::Decimal(_)), decimal);
            assert!(c.heap_bytes() <= open);
            if decimal {
                // A two-decimal gauge: about 7 bytes a value as XOR, under 1.5 as decimal.
                assert!(c.heap_bytes() * 4 < open, "{} vs {open}", c.heap_bytes());
            }
            assert!(c.is_intact());
            assert!(same_bits(&c.values().collect::<Vec<_>>(), values));
            // A chunk comes back from disk as it was sealed.
            let back: Chunk = postcard::from_bytes(&postcard::to_stdvec(&c).unwrap()).unwrap();
            assert!(back.is_intact());
            assert!(same_bits(&back.values().collect::<Vec<_>>(), values));
        }
    }

    #[test]
    fn damaged_chunks_are_not_intact() {
        let mut c = Chunk::new(0);
        for i in 0..CHUNK_SLOTS {
            c.push(f64::from(i) * 0.5);
        }
        c.seal();
        let mut bytes = postcard::to_stdvec(&c).unwrap();
        bytes.truncate(bytes.len() - 1);
        // A cut body either fails to deserialize or fails the check.
        if let Ok(cut) = postcard::from_bytes::<Chunk>(&bytes) {
            assert!(!cut.is_intact());
        }
        let mut short = c.clone();
        short.len += 1;
        assert!(!short.is_intact());
        // A length no chunk can have is refused before anything is sized by it.
        let mut huge = c.clone();
        huge.len = u32::MAX;
        assert!(!huge.is_intact());
    }

    #[test]
    fn slowly_changing_gauge_compresses_well() {
        let mut c = Chunk::new(0);
        for i in 0..CHUNK_SLOTS {
            c.push(1000.0 + f64::from(i % 7));
        }
        c.seal();
        // A raw f64 per slot would be 1,920 bytes; small integer steps take under half a byte.
        assert!(c.heap_bytes() < 120, "{} bytes", c.heap_bytes());
        assert_eq!(c.end_ms(60_000), i64::from(CHUNK_SLOTS) * 60_000);
    }
}
