//! The kernel's `hsiphash` on 64-bit machines (`lib/siphash.c`,
//! `BITS_PER_LONG == 64`): SipHash-1-3 over a 128-bit key, truncated to 32
//! bits. This is what `ip_vs_mh.c` hashes real servers and clients with.
//!
//! Models: `__hsiphash_unaligned` — message words read little-endian, the
//! length in the top byte of the final word, one compression round per
//! word, three finalization rounds, result `(v0 ^ v1 ^ v2 ^ v3) as u32`.
//! The 32-bit kernels' HalfSipHash variant is not modelled (kube-proxy
//! nodes are 64-bit).
//!
//! Must never: be used where an unpredictable hash is wanted — the IPVS
//! keys are fixed constants.
//!
//! Error contract: total function.

#[inline]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// `hsiphash(data, len, key)` with `key = [key[0], key[1]]`.
pub fn hsiphash(data: &[u8], key: [u64; 2]) -> u32 {
    let mut v = [
        0x736f_6d65_7073_6575 ^ key[0],
        0x646f_7261_6e64_6f6d ^ key[1],
        0x6c79_6765_6e65_7261 ^ key[0],
        0x7465_6462_7974_6573 ^ key[1],
    ];
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let m = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    let mut b = (data.len() as u64) << 56;
    for (i, byte) in chunks.remainder().iter().enumerate() {
        b |= u64::from(*byte) << (8 * i);
    }
    v[3] ^= b;
    round(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    (v[0] ^ v[1] ^ v[2] ^ v[3]) as u32
}

/// `hsiphash(&v, sizeof(v), key)` for a host-order (x86: little-endian)
/// `u32`, as `ip_vs_mh_hashkey` calls it.
pub fn hsiphash_u32(value: u32, key: [u64; 2]) -> u32 {
    hsiphash(&value.to_le_bytes(), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lib/siphash_kunit.c`, `test_vectors_hsiphash` (64-bit): the hash of
    /// bytes `0, 1, …, len-1` under key `0x0706050403020100,
    /// 0x0f0e0d0c0b0a0908`.
    #[test]
    fn kernel_test_vectors() {
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        let want: [u32; 18] = [
            0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7,
            0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7,
            0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c,
        ];
        let input: Vec<u8> = (0..18).collect();
        for (len, w) in want.iter().enumerate() {
            assert_eq!(hsiphash(&input[..len], key), *w, "length {len}");
        }
        assert_eq!(hsiphash_u32(0x0302_0100, key), 0x88d38328);
    }
}
