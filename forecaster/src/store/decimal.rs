//! Lossless decimal compression for sealed chunks.
//!
//! Most metric values were decimal numbers before they became floats: a temperature of 21.37, a
//! queue length of 12, a latency of 0.125 seconds. Such a float has a full binary mantissa, so the
//! XOR scheme of [`super::chunk`] keeps most of its 52 bits, yet it is exactly what
//! `round(v × 10^k) / 10^k` gives back for a small number of decimal places `k`. This codec
//! chooses a `k` at which a chunk's values come back bit for bit, and stores the integers
//! `round(v × 10^k)` bit-packed in blocks of [`BLOCK`], each block with its own minimum and width
//! and holding either the integers or their differences from one slot to the next. A value that does not come back at that `k`
//! (a rate computed by division, an infinity, a negative zero) is an exception kept with its exact
//! bits; missing steps (NaN) are a bitmap. The approach is the one of ALP (Afroozeh, Kuffó and
//! Boncz, "ALP: Adaptive Lossless floating-Point Compression", SIGMOD 2023).
//!
//! Decoding is the same IEEE division that encoding verified, so every value reads back exactly as
//! it was written; [`encode`] checks this for each value before it relies on it.
//!
//! Layout: the number of slots and `k` (varints), flags (varint; bit 0: a NaN bitmap follows), the bitmap (one bit per
//! slot, first slot in the lowest bit), the exception count and each exception (slot as varint,
//! then the value's 8 bytes little-endian), the first slot's integer (zigzag varint), then for
//! each block of up to [`BLOCK`] following slots: the block's minimum (zigzag varint), its bit
//! width (one byte, whose top bit says whether the block holds the integers themselves or their
//! differences from the previous slot) and each item minus that minimum, packed most significant
//! bit first.
//! NaN and exception slots repeat the previous integer, so they cost no bits in a block.

use super::chunk::{BitBuf, bits_at};

/// Slots per bit-packed block.
const BLOCK: usize = 32;

/// Largest number of decimal places tried: powers of ten up to 10^22 are exact in an `f64`, so
/// the division that decodes a value is a single correctly rounded operation.
const MAX_PLACES: u32 = 22;

/// Integers must be exact in an `f64` for the division to see the integer that was stored.
const MAX_INT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Powers of ten that are exact in an `f64`.
const POW10: [f64; MAX_PLACES as usize + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The integer that stands for `v` at `places` decimal places, when it reads back exactly.
fn to_int(v: f64, places: u32) -> Option<i64> {
    let p = POW10[places as usize];
    let m = (v * p).round();
    if m.abs() >= MAX_INT {
        return None;
    }
    // Decoded exactly as `decode` will: from the integer, so -0.0 does not pass for 0.0.
    let m = m as i64;
    ((m as f64 / p).to_bits() == v.to_bits()).then_some(m)
}

/// `v` rounded to `digits` significant decimal digits (`storage.significant_digits`): an
/// integer over a power of ten, which [`encode`] keeps as that integer while it is under 2^53.
/// `v` itself when `digits` is 0; for integers, which are compact already and may be byte
/// counts or counter values better kept whole; for NaN and infinities; and where the rounding
/// would need a power of ten past 10^22.
pub(crate) fn round_significant(v: f64, digits: u8) -> f64 {
    if digits == 0 || !v.is_finite() || v.fract() == 0.0 {
        return v;
    }
    // `floor(log10 |v|)` may be one off next to a power of ten; the value then keeps one digit
    // more or less, still far within what a 64-bit float holds.
    let magnitude = v.abs().log10().floor() as i32;
    let places = i32::from(digits) - 1 - magnitude;
    let Some(&p) = POW10.get(places.unsigned_abs() as usize) else {
        return v;
    };
    if places >= 0 {
        (v * p).round() / p
    } else {
        (v / p).round() * p
    }
}

/// The fewest decimal places at which `v` reads back exactly, if any.
fn places_of(v: f64) -> Option<u32> {
    (0..=MAX_PLACES).find(|&k| to_int(v, k).is_some())
}

/// Compresses `values` (NaN for a missing step). `None` when the decimal encoding is not
/// smaller than `limit` bytes, so the caller keeps what it has.
///
/// `k` is the most decimal places any value needs or, when a few need many more than the rest
/// (a ratio written with all its digits among values with two decimals), the places nine in
/// ten of them need, whichever encodes smaller. Values that need more places than `k` are
/// exceptions.
pub(crate) fn encode(values: &[f64], limit: usize) -> Option<Vec<u8>> {
    let mut needed = [0usize; MAX_PLACES as usize + 1];
    let (mut present, mut misses) = (0, 0);
    for &v in values.iter().filter(|v| !v.is_nan()) {
        present += 1;
        match places_of(v) {
            Some(k) => needed[k as usize] += 1,
            // A value no number of places represents is an exception at any of them: past
            // the budget of `encode_at`, stop looking (full-precision values end here).
            None => {
                misses += 1;
                if misses * 4 > values.len() {
                    return None;
                }
            }
        }
    }
    let represented = present - misses;
    let most = needed.iter().rposition(|&n| n > 0)?;
    let mut covered = 0;
    let nine_in_ten = needed
        .iter()
        .position(|&n| {
            covered += n;
            covered * 10 >= represented * 9
        })
        .unwrap_or(most);
    let mut best = encode_at(values, most as u32);
    if nine_in_ten < most
        && let Some(other) = encode_at(values, nine_in_ten as u32)
        && best.as_ref().is_none_or(|b| other.len() < b.len())
    {
        best = Some(other);
    }
    best.filter(|bytes| bytes.len() < limit)
}

/// Compresses `values` at `places` decimal places; `None` if more than a quarter of the values
/// would be exceptions (the XOR scheme is then the better choice anyway).
fn encode_at(values: &[f64], places: u32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    put_varint(&mut out, values.len() as u64);
    put_varint(&mut out, u64::from(places));
    let has_nan = values.iter().any(|v| v.is_nan());
    put_varint(&mut out, u64::from(has_nan));
    if has_nan {
        let mut bitmap = vec![0u8; values.len().div_ceil(8)];
        for (i, v) in values.iter().enumerate() {
            if v.is_nan() {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        out.extend_from_slice(&bitmap);
    }

    let mut ints = Vec::with_capacity(values.len());
    let mut exceptions = Vec::new();
    let mut prev = 0i64;
    for (i, &v) in values.iter().enumerate() {
        if !v.is_nan() {
            match to_int(v, places) {
                Some(m) => prev = m,
                None => exceptions.push((i, v)),
            }
        }
        ints.push(prev);
    }
    if exceptions.len() * 4 > values.len() {
        return None;
    }
    put_varint(&mut out, exceptions.len() as u64);
    for (i, v) in exceptions {
        put_varint(&mut out, i as u64);
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    let Some((&first, _)) = ints.split_first() else {
        return Some(out);
    };
    put_varint(&mut out, zigzag(first));
    // |ints| < 2^53, so differences and offsets from a block's minimum fit without overflow.
    let mut prev = first;
    for block in ints[1..].chunks(BLOCK) {
        let deltas: Vec<i64> = block
            .iter()
            .map(|&m| {
                let d = m - prev;
                prev = m;
                d
            })
            .collect();
        // Differences suit trends and counters, the values themselves a gauge that wanders
        // around a level; each block takes whichever is narrower.
        let (delta_min, delta_width) = frame(&deltas);
        let (value_min, value_width) = frame(block);
        let (items, min, mode) = if value_width < delta_width {
            (block, value_min, VALUES)
        } else {
            (&deltas[..], delta_min, 0)
        };
        let width = delta_width.min(value_width);
        put_varint(&mut out, zigzag(min));
        out.push(width as u8 | mode);
        let mut bits = BitBuf::default();
        for &d in items {
            bits.push_bits((d - min) as u64, width);
        }
        out.extend_from_slice(&bits.bytes);
    }
    Some(out)
}

/// Flag in a block's width byte: the block holds values, not differences.
const VALUES: u8 = 0x80;

/// A block's minimum and the bits its offsets from it need.
fn frame(items: &[i64]) -> (i64, u32) {
    let min = items.iter().copied().min().unwrap_or(0);
    let max_offset = items.iter().map(|&d| (d - min) as u64).max().unwrap_or(0);
    (min, 64 - max_offset.leading_zeros())
}

/// Decompresses `len` values written by [`encode`]; `None` if the bytes are not such an encoding.
pub(crate) fn decode(bytes: &[u8], len: usize) -> Option<Vec<f64>> {
    let mut r = Reader { bytes, pos: 0 };
    if usize::try_from(r.varint()?).ok()? != len {
        return None;
    }
    let places = u32::try_from(r.varint()?)
        .ok()
        .filter(|&k| k <= MAX_PLACES)?;
    let p = POW10[places as usize];
    let nan = match r.varint()? {
        0 => None,
        1 => Some(r.take(len.div_ceil(8))?),
        _ => return None,
    };
    let n_exceptions = usize::try_from(r.varint()?).ok().filter(|&n| n <= len)?;
    let mut exceptions = Vec::with_capacity(n_exceptions);
    for _ in 0..n_exceptions {
        let slot = usize::try_from(r.varint()?).ok().filter(|&i| i < len)?;
        let bits = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        exceptions.push((slot, f64::from_bits(bits)));
    }

    let mut out = Vec::with_capacity(len);
    if len > 0 {
        let mut current = unzigzag(r.varint()?);
        out.push(current);
        while out.len() < len {
            let min = unzigzag(r.varint()?);
            let header = *r.take(1)?.first()?;
            let width = u32::from(header & !VALUES);
            if width > 64 {
                return None;
            }
            let count = BLOCK.min(len - out.len());
            let packed = r.take((count * width as usize).div_ceil(8))?;
            for j in 0..count {
                let item = min.checked_add_unsigned(bits_at(packed, j * width as usize, width))?;
                current = if header & VALUES != 0 {
                    item
                } else {
                    current.checked_add(item)?
                };
                out.push(current);
            }
        }
    }
    if r.pos != bytes.len() {
        return None;
    }

    let mut values: Vec<f64> = out.into_iter().map(|m| m as f64 / p).collect();
    if let Some(bitmap) = nan {
        for (i, v) in values.iter_mut().enumerate() {
            if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                *v = f64::NAN;
            }
        }
    }
    for (slot, v) in exceptions {
        values[slot] = v;
    }
    Some(values)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first()?;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_rounded_to_significant_digits_read_back_exactly_from_decimal_chunks() {
        assert_eq!(round_significant(123.456_789_123, 7), 123.456_8);
        assert_eq!(round_significant(-0.000_123_456_789, 3), -0.000_123);
        assert_eq!(round_significant(987_654_321.5, 4), 987_700_000.0);
        // Integers are kept whole: a byte count does not lose its last digits.
        assert_eq!(round_significant(987_654_321.0, 4), 987_654_321.0);
        assert_eq!(round_significant(1.5, 0), 1.5);
        // Left alone: what has no digits to round, and what would need a power of ten past
        // 10^22.
        for v in [0.0, -0.0, f64::INFINITY, f64::NAN, 1e-300, 1e300] {
            assert_eq!(round_significant(v, 7).to_bits(), v.to_bits(), "{v}");
        }
        // Rates of a counter, full precision: rounded, every value is kept exactly by a
        // decimal chunk, in far fewer bytes than the values as they came.
        let mut rng = Rng(7);
        let raw: Vec<f64> = (0..240)
            .map(|i| (1_000.0 + 300.0 * (i as f64 / 40.0).sin() + rng.unit() * 50.0) / 60.013)
            .collect();
        let rounded: Vec<f64> = raw.iter().map(|v| round_significant(*v, 7)).collect();
        assert!(
            rounded
                .iter()
                .zip(&raw)
                .all(|(r, v)| ((r - v) / v).abs() < 1e-6)
        );
        // Idempotent: a value already rounded stays as it is.
        assert!(
            rounded
                .iter()
                .all(|r| round_significant(*r, 7).to_bits() == r.to_bits())
        );
        let bytes = encode(&rounded, usize::MAX).expect("encodes");
        let back = decode(&bytes, rounded.len()).expect("decodes");
        assert!(
            back.iter()
                .zip(&rounded)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        assert!(bytes.len() < 240 * 4, "{} bytes", bytes.len());
        assert!(
            encode(&raw, 240 * 6).is_none(),
            "full precision does not fit in 6 B a value"
        );
    }

    use crate::test_rng::Rng;

    fn assert_round_trip(values: &[f64]) -> Option<usize> {
        let bytes = encode(values, usize::MAX)?;
        let back = decode(&bytes, values.len()).expect("decodes");
        assert_eq!(back.len(), values.len());
        for (a, b) in values.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} came back as {b}");
        }
        Some(bytes.len())
    }

    #[test]
    fn decimal_values_round_trip_bit_for_bit_in_far_fewer_bytes() {
        let mut rng = Rng(7);
        // A two-decimal gauge: 42.17 and the like, wandering by up to ±5.
        let gauge: Vec<f64> = (0..240)
            .map(|_| ((4217.0 + (rng.unit() - 0.5) * 1000.0).round()) / 100.0)
            .collect();
        let size = assert_round_trip(&gauge).expect("a two-decimal gauge encodes");
        // 1,000 hundredths take 10 bits; XOR would take about 7 bytes a value.
        assert!(size < 240 * 3 / 2, "{size} bytes");

        // A steadily growing integer count costs almost nothing past its first value.
        let count: Vec<f64> = (0..240)
            .map(|i| 1_000_000.0 + f64::from(i) * 37.0)
            .collect();
        let size = assert_round_trip(&count).expect("integers encode");
        assert!(size < 40, "{size} bytes");
    }

    #[test]
    fn every_kind_of_value_comes_back_exactly() {
        let mut rng = Rng(42);
        let mut cases: Vec<Vec<f64>> = vec![
            vec![],
            vec![0.0],
            vec![f64::NAN; 240],
            vec![-0.0, 0.0, -0.0, 1.0],
            vec![
                f64::INFINITY,
                1.5,
                f64::NEG_INFINITY,
                2.5,
                3.5,
                4.5,
                5.5,
                6.5,
            ],
            vec![1e-300, 2e-300, 3e-300],
            vec![9_007_199_254_740_993.0, 1.0, 2.0, 3.0, 4.0],
            vec![0.1, 0.2, 0.30000000000000004, 0.7],
            vec![1e22, -1e22, 5e21, 1.0],
            (0..240).map(|i| f64::from(i) * 0.001).collect(),
            (0..240)
                .map(|i| -123.456 + f64::from(i % 17) * 1e-3)
                .collect(),
            // Extreme swings: differences need all 56 bits of a block.
            (0..240)
                .map(|i| if i % 2 == 0 { 9.0e15 } else { -9.0e15 })
                .collect(),
        ];
        for places in 0..6u32 {
            let p = POW10[places as usize];
            cases.push(
                (0..300)
                    .map(|_| match rng.next() % 10 {
                        0 => f64::NAN,
                        1 => rng.unit() * 1e6, // full precision: an exception
                        _ => ((rng.unit() - 0.5) * 1e5 * p).round() / p,
                    })
                    .collect(),
            );
        }
        for values in cases {
            assert_round_trip(&values);
        }
    }

    #[test]
    fn a_few_values_with_more_places_do_not_spoil_a_decimal_chunk() {
        let mut values: Vec<f64> = (0..240).map(|i| f64::from(1000 + i % 50) / 100.0).collect();
        for i in [3, 70, 150, 151, 239] {
            values[i] = 12.345_678_9; // seven more places than the rest
        }
        let size = assert_round_trip(&values).expect("encodes");
        // Two places for the rest and five exceptions, rather than nine places (36-bit
        // integers) for all.
        assert!(size < 240 + 5 * 10, "{size} bytes");
        // Values no number of places represents are exceptions too.
        values[100] = 0.1 + 0.2;
        assert!(assert_round_trip(&values).expect("encodes") < 240 + 6 * 10);
    }

    #[test]
    fn full_precision_noise_is_left_to_the_xor_scheme() {
        let mut rng = Rng(3);
        let noise: Vec<f64> = (0..240).map(|_| rng.unit() * 100.0).collect();
        assert_eq!(encode(&noise, usize::MAX), None);
        // Nor is an encoding returned that is not smaller than the limit.
        let small = [1.0, 2.0, 3.0];
        assert_eq!(encode(&small, 2), None);
    }

    #[test]
    fn damaged_bytes_are_refused_not_misread() {
        let values: Vec<f64> = (0..100).map(|i| f64::from(i) * 0.25).collect();
        let bytes = encode(&values, usize::MAX).expect("encodes");
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], values.len()), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer, values.len()), None);
        assert_eq!(decode(&[0xff; 12], 10), None);
    }
}
