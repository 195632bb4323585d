//! Internet checksums as the kernel keeps them when it rewrites packets.
//!
//! Models: the one's-complement sum of RFC 1071, the incremental update of
//! RFC 1624 (eqn. 3, what the kernel's `inet_proto_csum_replace*` does when
//! NAT rewrites an address or a port), and CRC32c for SCTP (RFC 4960,
//! stored little-endian as `sctp_compute_cksum` does).
//!
//! Must never: recompute a whole checksum where the kernel updates one
//! incrementally — a NAT rewrite must keep any error the sender put in the
//! checksum, exactly like the kernel does.
//!
//! Error contract: none; the functions are total. Callers pass slices of
//! equal, even length where the documentation says so.

/// Fold a 32-bit accumulator into 16 bits (end-around carry).
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The one's-complement sum of `data` (odd lengths padded with a zero
/// byte), not complemented.
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        sum = u32::from(fold(sum));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    fold(sum)
}

/// The Internet checksum of `data`: the complement of its one's-complement sum.
pub fn internet(data: &[u8]) -> u16 {
    !ones_sum(data)
}

/// Update checksum `check` for `old` bytes replaced by `new` bytes (RFC 1624
/// eqn. 3: `HC' = ~(~HC + ~m + m')`). `old` and `new` must have the same
/// even length and start at an even offset of the checksummed data.
pub fn replace(check: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    debug_assert_eq!(old.len() % 2, 0);
    let mut sum = u32::from(!check);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([n[0], n[1]]));
        sum = u32::from(fold(sum));
    }
    !fold(sum)
}

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xffff_ffff;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82f6_3b78 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_example() {
        // The classic example header with its checksum (0xb861) zeroed.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet(&hdr), 0xb861);
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut data: Vec<u8> = (0u8..40).map(|i| i.wrapping_mul(37)).collect();
        let check = internet(&data);
        let old = data[12..16].to_vec();
        let new = [10, 244, 1, 7];
        data[12..16].copy_from_slice(&new);
        assert_eq!(replace(check, &old, &new), internet(&data));
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }
}
