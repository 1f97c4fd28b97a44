//! Interned names (device, site and metric ids): every name lives in one contiguous buffer and
//! the hash table holds only small indexes, so looking up a device per reading touches compact
//! memory instead of chasing a heap pointer per key.

use hashbrown::HashTable;
use std::hash::BuildHasher;

#[derive(Clone, Default)]
pub struct Interner {
    text: String,
    spans: Vec<(u32, u32)>,
    table: HashTable<Slot>,
    hasher: rustc_hash::FxBuildHasher,
}

/// Short names (most device ids) are kept in the table itself, so a lookup reads one cache line
/// and compares one 16-byte key.
#[derive(Clone, Copy)]
struct Slot {
    idx: u32,
    /// [`ShortKey`] of the name, or `LONG`: compare the buffer.
    key: u128,
}

const LONG: u128 = u128::MAX;

/// A name of at most 15 bytes as one number: its bytes little-endian, zero-padded, its length in
/// the top byte. Loaded with two overlapping word reads instead of a byte loop, so building and
/// comparing it costs a few instructions (a reading's device and metric are keyed this way).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ShortKey(pub u128);

impl ShortKey {
    pub const MAX_LEN: usize = 15;

    #[inline]
    pub fn of(s: &str) -> Option<ShortKey> {
        let b = s.as_bytes();
        let n = b.len();
        let v: u128 = if n > Self::MAX_LEN {
            return None;
        } else if n >= 8 {
            let lo = u64::from_le_bytes(b[..8].try_into().ok()?);
            // bytes n-8..n; bytes 8..n are its top n-8 bytes
            let hi = u64::from_le_bytes(b[n - 8..].try_into().ok()?)
                .checked_shr(8 * (16 - n as u32))
                .unwrap_or(0);
            lo as u128 | (hi as u128) << 64
        } else if n >= 4 {
            let lo = u32::from_le_bytes(b[..4].try_into().ok()?) as u64;
            let hi = u32::from_le_bytes(b[n - 4..].try_into().ok()?) as u64;
            (lo | (hi >> (8 * (8 - n as u32))) << 32) as u128
        } else if n > 0 {
            // first, middle and last byte: for one to three bytes, together all of them
            (b[0] as u128)
                | (b[n / 2] as u128) << (8 * (n / 2))
                | (b[n - 1] as u128) << (8 * (n - 1))
        } else {
            0
        };
        Some(ShortKey(v | (n as u128) << 120))
    }

    /// A cheap, well-mixed hash of the key (multiply and fold).
    #[inline]
    fn hash(self) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let (lo, hi) = (self.0 as u64, (self.0 >> 64) as u64);
        let m = (lo ^ hi.rotate_left(29)).wrapping_mul(K) as u128 * (hi ^ K) as u128;
        (m as u64) ^ ((m >> 64) as u64)
    }
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner")
            .field("len", &self.spans.len())
            .finish()
    }
}

impl Interner {
    #[inline]
    fn hash(&self, s: &str) -> u64 {
        match ShortKey::of(s) {
            Some(k) => k.hash(),
            None => self.hasher.hash_one(s),
        }
    }

    /// The name of an index.
    #[inline]
    pub fn resolve(&self, i: u32) -> &str {
        let (a, b) = self.spans[i as usize];
        &self.text[a as usize..b as usize]
    }

    /// Whether index `i` names `s` (short names compared byte by byte inline: for the one to
    /// three bytes of most site ids a `memcmp` call costs more than the comparison).
    #[inline]
    pub fn is(&self, i: u32, s: &str) -> bool {
        let (a, b) = self.spans[i as usize];
        let name = self
            .text
            .as_bytes()
            .get(a as usize..b as usize)
            .unwrap_or_default();
        let s = s.as_bytes();
        if name.len() != s.len() {
            return false;
        }
        if name.len() > ShortKey::MAX_LEN {
            return name == s;
        }
        name.iter().zip(s).all(|(x, y)| x == y)
    }

    /// The index of a name, if interned.
    #[inline]
    pub fn get(&self, s: &str) -> Option<u32> {
        match ShortKey::of(s) {
            Some(key) => self.get_short(key),
            None => self
                .table
                .find(self.hasher.hash_one(s), |slot| {
                    slot.key == LONG && self.resolve(slot.idx) == s
                })
                .map(|slot| slot.idx),
        }
    }

    /// The index of a short name by its key.
    #[inline]
    pub fn get_short(&self, key: ShortKey) -> Option<u32> {
        self.table
            .find(key.hash(), |slot| slot.key == key.0)
            .map(|slot| slot.idx)
    }

    /// Intern a name: its existing index, or a new one.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.get(s) {
            return i;
        }
        let i = self.spans.len() as u32;
        let a = self.text.len() as u32;
        self.text.push_str(s);
        self.spans.push((a, self.text.len() as u32));
        let h = self.hash(s);
        let key = ShortKey::of(s).map_or(LONG, |k| k.0);
        let (text, spans, hasher) = (&self.text, &self.spans, &self.hasher);
        self.table.insert_unique(h, Slot { idx: i, key }, |slot| {
            if slot.key != LONG {
                return ShortKey(slot.key).hash();
            }
            let (a, b) = spans[slot.idx as usize];
            hasher.hash_one(&text[a as usize..b as usize])
        });
        i
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_and_resolves() {
        let mut n = Interner::default();
        let ids: Vec<u32> = (0..1000).map(|i| n.intern(&format!("d{i}"))).collect();
        let long = n.intern("a-rather-long-device-id-0001");
        assert_eq!(n.get("a-rather-long-device-id-0001"), Some(long));
        assert_eq!(n.get("a-rather-long-device-id-0002"), None);
        assert_eq!(n.intern("d7"), ids[7]);
        assert_eq!(n.get("d999"), Some(ids[999]));
        assert_eq!(n.get("d1000"), None);
        assert_eq!(n.resolve(ids[42]), "d42");
        assert!(n.is(ids[42], "d42") && !n.is(ids[42], "d421") && !n.is(ids[42], "d4"));
        assert!(n.is(long, "a-rather-long-device-id-0001") && !n.is(long, "d42"));
        assert_eq!(n.len(), 1001);
    }

    proptest::proptest! {
        #[test]
        fn short_keys_are_exact(a in "[a-z0-9.-]{0,17}", b in "[a-z0-9.-]{0,17}") {
            let (ka, kb) = (ShortKey::of(&a), ShortKey::of(&b));
            proptest::prop_assert_eq!(ka.is_some(), a.len() <= 15);
            if let (Some(ka), Some(kb)) = (ka, kb) {
                proptest::prop_assert_eq!(ka == kb, a == b);
                // the key is the bytes, zero-padded, with the length on top
                let mut want = [0u8; 16];
                want[..a.len()].copy_from_slice(a.as_bytes());
                want[15] = a.len() as u8;
                proptest::prop_assert_eq!(ka.0, u128::from_le_bytes(want));
            }
            let mut n = Interner::default();
            let ia = n.intern(&a);
            proptest::prop_assert_eq!(n.get(&a), Some(ia));
            proptest::prop_assert_eq!(n.get(&b).is_some(), a == b);
        }
    }
}
