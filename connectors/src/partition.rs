//! How Kafka producers map a message key to a partition, computed here the same way so an
//! instance knows which partition (and so which instance of a group) a key belongs to.

/// A producer's partitioner: `consistent_random` (CRC-32 of the key; librdkafka and kcat) or
/// `murmur2_random` (the Java client's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioner {
    Crc32,
    Murmur2,
}

impl Partitioner {
    /// The partition of `key` among `n`, as the producers compute it.
    pub fn partition(self, key: &[u8], n: i32) -> i32 {
        if n <= 0 {
            return 0;
        }
        match self {
            Partitioner::Crc32 => {
                const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
                (CRC.checksum(key) % n as u32) as i32
            }
            Partitioner::Murmur2 => ((murmur2(key) & 0x7fff_ffff) % n as u32) as i32,
        }
    }
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`, seed 0x9747b28c).
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_as_the_clients_do() {
        // the Java client's murmur2 (its own test vectors), as a signed 32-bit number
        for (key, want) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key.as_bytes()) as i32, want, "{key}");
        }
        // librdkafka's consistent partitioner (kcat's default): CRC-32 of the key
        assert_eq!(
            Partitioner::Crc32.partition(b"123456789", 1_000),
            (0xCBF4_3926u32 % 1_000) as i32
        );
    }
}
