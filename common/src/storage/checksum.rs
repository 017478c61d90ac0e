//! CRC-32 arithmetic on pieces of objects, for checksums of objects assembled inside S3.
//!
//! A server-side copy never shows us its bytes, yet the manifest lists every output's CRC-32.
//! CRC-32 is linear, so the checksum of a concatenation follows from the pieces' checksums and
//! lengths (`concat`, zlib's crc32_combine through crc32fast), and the checksum of a piece
//! follows from the whole and its neighbours (`strip_prefix`, `strip_suffix`).

/// The CRC-32 (IEEE) of some bytes.
pub fn of(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// crc(a ‖ b) from crc(a), crc(b) and len(b).
pub fn concat(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    let mut a = crc32fast::Hasher::new_with_initial_len(crc_a, 0);
    a.combine(&crc32fast::Hasher::new_with_initial_len(crc_b, len_b));
    a.finalize()
}

/// crc(b) from crc(a ‖ b), crc(a) and len(b).
pub fn strip_prefix(crc_ab: u32, crc_a: u32, len_b: u64) -> u32 {
    // crc(a ‖ b) = shift(crc(a), len(b)) ^ crc(b), and shift(x, n) = concat(x, 0, n).
    crc_ab ^ concat(crc_a, 0, len_b)
}

/// crc(a) from crc(a ‖ b), crc(b) and len(b).
pub fn strip_suffix(crc_ab: u32, crc_b: u32, len_b: u64) -> u32 {
    unshift(crc_ab ^ crc_b, len_b)
}

/// The inverse of shifting a CRC by `len` bytes (multiplying by x^(8·len) modulo the CRC-32
/// polynomial). x has multiplicative order 2^32 − 1 modulo that polynomial (a unit test checks
/// it), so multiplying by x^(8·(2^32 − 1 − len)) undoes the shift.
fn unshift(crc: u32, len: u64) -> u32 {
    const ORDER: u64 = (1 << 32) - 1;
    concat(crc, 0, ORDER - len % ORDER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn crc(bytes: &[u8]) -> u32 {
        crc32fast::hash(bytes)
    }

    #[test]
    fn shifting_by_the_order_of_x_is_the_identity() {
        for value in [1u32, 0xdead_beef, 0x8000_0000, 0x1234_5678] {
            assert_eq!(concat(value, 0, (1 << 32) - 1), value);
        }
    }

    proptest! {
        #[test]
        fn pieces_and_wholes_agree(
            a in proptest::collection::vec(any::<u8>(), 0..300),
            b in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let ab = [a.as_slice(), b.as_slice()].concat();
            prop_assert_eq!(concat(crc(&a), crc(&b), b.len() as u64), crc(&ab));
            prop_assert_eq!(strip_prefix(crc(&ab), crc(&a), b.len() as u64), crc(&b));
            prop_assert_eq!(strip_suffix(crc(&ab), crc(&b), b.len() as u64), crc(&a));
        }
    }
}
