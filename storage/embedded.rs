//! The default genomes, compiled into the binary so the service renders something with no
//! database configured. They are the reference fixtures (tests/fixtures/reference), embedded from
//! there so the repository keeps one copy of each file.

use crate::StoreError;

macro_rules! embedded_genomes {
    ($($id:literal),+ $(,)?) => {
        /// Ids of the genomes in [`EmbeddedGenomes`], in id order.
        pub const DEFAULT_GENOME_IDS: &[&str] = &[$($id),+];

        /// (id, genome JSON) in id order, so lookups can binary-search.
        static EMBEDDED: &[(&str, &[u8])] = &[$((
            $id,
            include_bytes!(concat!("../tests/fixtures/reference/", $id, ".genome.json")),
        )),+];
    };
}

embedded_genomes!(
    "01M88X7HMX6C9TPT2A9HCKMZQJ",
    "01M88X7PY07G2VCJFN58PEHATX",
    "01M88X7T6Y68CC64GC56PAT2JM",
    "01M88X7TR5FK5AC40SH6TJCWC6",
    "01M88X7XN81HEA58YYNTFXHV28",
    "01M88X89P1QB0VWHDT4KFFACZC",
    "01M88X8EMSXWZE35NP3PBFS4V7",
    "01M88X99QVYYHHB5Y83SETHWK1",
);

/// The genomes built into the binary (see [`DEFAULT_GENOME_IDS`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbeddedGenomes;

impl EmbeddedGenomes {
    /// The genome JSON for `id`, exactly as in its fixture file.
    pub fn get(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        self.get_static(id)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| StoreError::not_found(id))
    }

    /// Like [`EmbeddedGenomes::get`], without the copy.
    pub fn get_static(&self, id: &str) -> Option<&'static [u8]> {
        EMBEDDED
            .binary_search_by(|(key, _)| (*key).cmp(id))
            .ok()
            .map(|index| EMBEDDED[index].1)
    }

    /// Ids in id order, at most `limit` of them.
    pub fn list(&self, limit: Option<usize>) -> Vec<String> {
        DEFAULT_GENOME_IDS
            .iter()
            .take(limit.unwrap_or(usize::MAX))
            .map(|id| (*id).to_owned())
            .collect()
    }

    /// One page of ids in id order: at most `limit` of them, all after `after` when given.
    pub fn list_after(&self, after: Option<&str>, limit: usize) -> Vec<String> {
        let from = after.map_or(0, |after| {
            DEFAULT_GENOME_IDS.partition_point(|id| *id <= after)
        });
        DEFAULT_GENOME_IDS[from..]
            .iter()
            .take(limit)
            .map(|id| (*id).to_owned())
            .collect()
    }

    /// Number of embedded genomes.
    pub fn len(&self) -> usize {
        EMBEDDED.len()
    }

    /// Always false; present because `len` is.
    pub fn is_empty(&self) -> bool {
        EMBEDDED.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sorted_for_binary_search() {
        assert!(DEFAULT_GENOME_IDS.windows(2).all(|w| w[0] < w[1]));
        assert!(EMBEDDED
            .iter()
            .map(|(id, _)| *id)
            .eq(DEFAULT_GENOME_IDS.iter().copied()));
    }
}
