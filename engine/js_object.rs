//! An insertion-ordered map with JavaScript's property order.
//!
//! The original walks plain JS objects (`for (key in graph)`, `Object.keys`), and the order of
//! that walk decides the order in which Web Audio nodes are created and connected, which in turn
//! decides the order in which web-audio-api sums a node's inputs. JS orders "array index" keys
//! (canonical decimal integers below 2^32 - 1) first, ascending, then all other string keys in
//! insertion order; assigning to an existing key keeps its position.

#[derive(Clone, Debug, PartialEq)]
pub struct JsObject<V> {
    entries: Vec<(String, V)>,
}

impl<V> Default for JsObject<V> {
    fn default() -> Self {
        JsObject {
            entries: Vec::new(),
        }
    }
}

/// The array-index value of a key, if JS treats it as one.
fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || key.len() > 10 || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u64 = key.parse().ok()?;
    (v < u32::MAX as u64).then_some(v as u32)
}

impl<V> JsObject<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// `obj[key] = value`.
    pub fn insert(&mut self, key: impl Into<String>, value: V) {
        let key = key.into();
        if let Some(slot) = self.get_mut(&key) {
            *slot = value;
            return;
        }
        let pos = match array_index(&key) {
            Some(idx) => self
                .entries
                .iter()
                .position(|(k, _)| array_index(k).is_none_or(|other| other > idx))
                .unwrap_or(self.entries.len()),
            None => self.entries.len(),
        };
        self.entries.insert(pos, (key, value));
    }

    /// `delete obj[key]`.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }

    /// Entries in JS property order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_first_then_insertion_order() {
        let mut o = JsObject::new();
        o.insert("b", 1);
        o.insert("10", 2);
        o.insert("a", 3);
        o.insert("2", 4);
        o.insert("007", 5); // leading zero: a plain string key
        o.insert("b", 6); // reassignment keeps position
        let keys: Vec<_> = o.keys().collect();
        assert_eq!(keys, ["2", "10", "b", "a", "007"]);
        assert_eq!(o.get("b"), Some(&6));
        o.remove("10");
        assert_eq!(o.keys().collect::<Vec<_>>(), ["2", "b", "a", "007"]);
    }

    #[test]
    fn array_index_bounds() {
        assert_eq!(array_index("4294967294"), Some(4294967294));
        assert_eq!(array_index("4294967295"), None);
        assert_eq!(array_index("0"), Some(0));
        assert_eq!(array_index("-1"), None);
        assert_eq!(array_index("1e3"), None);
    }
}
