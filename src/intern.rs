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
/// and compares two fixed-size arrays.
#[derive(Clone, Copy)]
struct Slot {
    idx: u32,
    /// The name zero-padded, its length in the last byte; `LONG` there: compare the buffer.
    key: [u8; 12],
}

const INLINE: usize = 11;
const LONG: u8 = u8::MAX;

/// The fixed-size key of a short name, or `None` for a long one.
#[inline]
fn short_key(s: &str) -> Option<[u8; 12]> {
    let b = s.as_bytes();
    if b.len() > INLINE {
        return None;
    }
    let mut key = [0u8; 12];
    for (k, c) in key.iter_mut().zip(b) {
        *k = *c;
    }
    key[INLINE] = b.len() as u8;
    Some(key)
}

impl Slot {
    fn new(idx: u32, s: &str) -> Slot {
        let key = short_key(s).unwrap_or_else(|| {
            let mut k = [0u8; 12];
            k[INLINE] = LONG;
            k
        });
        Slot { idx, key }
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
        self.hasher.hash_one(s)
    }

    /// The name of an index.
    #[inline]
    pub fn resolve(&self, i: u32) -> &str {
        let (a, b) = self.spans[i as usize];
        &self.text[a as usize..b as usize]
    }

    /// The index of a name, if interned.
    #[inline]
    pub fn get(&self, s: &str) -> Option<u32> {
        let h = self.hash(s);
        match short_key(s) {
            Some(key) => self.table.find(h, |slot| slot.key == key),
            None => self.table.find(h, |slot| {
                slot.key[INLINE] == LONG && self.resolve(slot.idx) == s
            }),
        }
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
        let (text, spans, hasher) = (&self.text, &self.spans, &self.hasher);
        self.table.insert_unique(h, Slot::new(i, s), |slot| {
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
        assert_eq!(n.len(), 1001);
    }
}
