//! Genome lookup for renders: storage (a database or the embedded default) behind a bounded
//! cache of compiled genomes, so a popular genome is parsed and compiled once.

use std::collections::HashMap;
use std::sync::Arc;

use krs_engine::{CompiledGenome, Error};
use krs_storage::Genomes;
use parking_lot::Mutex;

use crate::protocol::GenomeRef;

/// Compiled genomes kept in memory. A compiled reference genome is a few tens of KiB, so the
/// cache stays in the low MiB even when full.
pub const MAX_CACHED_GENOMES: usize = 256;

/// Genome source plus cache; shared by all workers (`Arc<GenomeProvider>`). The lock is taken
/// once per render start, never per block.
pub struct GenomeProvider {
    source: Genomes,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, (Arc<CompiledGenome>, u64)>,
    clock: u64,
}

impl GenomeProvider {
    pub fn new(source: Genomes) -> GenomeProvider {
        GenomeProvider {
            source,
            cache: Mutex::new(Cache::default()),
        }
    }

    pub fn source(&self) -> &Genomes {
        &self.source
    }

    /// The compiled genome, from the cache or freshly fetched and compiled. Inline genomes are
    /// compiled every time: they are usually one-offs and would only churn the cache.
    pub fn get(&self, genome: &GenomeRef) -> Result<Arc<CompiledGenome>, Error> {
        let id = match genome {
            GenomeRef::Inline(json) => {
                return CompiledGenome::from_json(json)
                    .map(Arc::new)
                    .map_err(|e| Error::new(format!("Invalid genome: {e}")))
            }
            GenomeRef::Id(id) => id,
            GenomeRef::InRun { run, .. } => {
                return Err(Error::new(format!(
                    "evoRunId {run}: this server has no evolution runs (see --evoruns-dir)"
                )))
            }
        };
        {
            let mut cache = self.cache.lock();
            cache.clock += 1;
            let now = cache.clock;
            if let Some((genome, used)) = cache.entries.get_mut(id) {
                *used = now;
                return Ok(genome.clone());
            }
        }
        // Fetch and compile outside the lock; two workers racing on one id both compile it,
        // which costs a little CPU and nothing else.
        let json = self.source.get(id).map_err(|e| Error::new(e.to_string()))?;
        let compiled = Arc::new(
            CompiledGenome::from_json(&json)
                .map_err(|e| Error::new(format!("Genome {id} cannot be rendered: {e}")))?,
        );
        let mut cache = self.cache.lock();
        if cache.entries.len() >= MAX_CACHED_GENOMES {
            if let Some(oldest) = cache
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                cache.entries.remove(&oldest);
            }
        }
        cache.clock += 1;
        let now = cache.clock;
        cache.entries.insert(id.clone(), (compiled.clone(), now));
        Ok(compiled)
    }

    /// Genomes in the cache (for tests and stats).
    pub fn cached(&self) -> usize {
        self.cache.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_by_id_and_reports_missing_genomes() {
        let provider = GenomeProvider::new(Genomes::open_default());
        let id = krs_storage::DEFAULT_GENOME_IDS[0];
        let a = provider.get(&GenomeRef::Id(id.into())).unwrap();
        let b = provider.get(&GenomeRef::Id(id.into())).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(provider.cached(), 1);
        let e = provider.get(&GenomeRef::Id("NOPE".into())).unwrap_err();
        assert!(e.message().contains("NOPE"), "{e}");
        let e = provider
            .get(&GenomeRef::Inline(b"{\"genome\":1}".to_vec()))
            .unwrap_err();
        assert!(e.message().starts_with("Invalid genome"), "{e}");
    }
}
