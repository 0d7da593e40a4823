//! Genome lookup for renders: storage (a database or the embedded default) behind a bounded
//! cache of compiled genomes, so a popular genome is parsed and compiled once.

use std::collections::HashMap;
use std::path::PathBuf;
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
    /// kromosynth-cli run folders (`<dir>/<evoRunId>/genomes.sqlite`) for `evoRunId` requests.
    evoruns: Option<PathBuf>,
    /// Run databases opened so far, at most [`MAX_OPEN_RUNS`] (each holds per-thread
    /// read-only connections; evolution runs read one run at a time, so which one is closed
    /// first hardly matters).
    runs: Mutex<HashMap<String, Genomes>>,
    cache: Mutex<Cache>,
}

/// Run databases kept open at once; beyond that one of them (any) is closed to make room.
pub const MAX_OPEN_RUNS: usize = 64;

#[derive(Default)]
struct Cache {
    entries: HashMap<String, (Arc<CompiledGenome>, u64)>,
    clock: u64,
}

impl GenomeProvider {
    pub fn new(source: Genomes) -> GenomeProvider {
        GenomeProvider {
            source,
            evoruns: None,
            runs: Mutex::new(HashMap::new()),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Also serves `genomeId` + `evoRunId` from the run folders under `dir`.
    pub fn with_evoruns(mut self, dir: Option<PathBuf>) -> GenomeProvider {
        self.evoruns = dir;
        self
    }

    /// The database of one evolution run, opened on first use.
    fn run(&self, run: &str) -> Result<Genomes, Error> {
        let Some(dir) = &self.evoruns else {
            return Err(Error::new(format!(
                "evoRunId {run}: this server serves no evolution runs (start it with --evoruns-dir)"
            )));
        };
        if let Some(genomes) = self.runs.lock().get(run) {
            return Ok(genomes.clone());
        }
        // The protocol only lets plain folder names through; a run is a folder of `dir`.
        let path = dir.join(run).join("genomes.sqlite");
        let genomes =
            Genomes::open(&path).map_err(|e| Error::new(format!("evoRunId {run}: {e}")))?;
        let mut runs = self.runs.lock();
        if runs.len() >= MAX_OPEN_RUNS {
            if let Some(any) = runs.keys().next().cloned() {
                runs.remove(&any);
            }
        }
        runs.insert(run.to_owned(), genomes.clone());
        Ok(genomes)
    }

    pub fn source(&self) -> &Genomes {
        &self.source
    }

    /// The compiled genome, from the cache or freshly fetched and compiled. Inline genomes are
    /// compiled every time: they are usually one-offs and would only churn the cache.
    pub fn get(&self, genome: &GenomeRef) -> Result<Arc<CompiledGenome>, Error> {
        let (key, id) = match genome {
            GenomeRef::Inline(json) => {
                return CompiledGenome::from_json(json)
                    .map(Arc::new)
                    .map_err(|e| Error::new(format!("Invalid genome: {e}")))
            }
            GenomeRef::Id(id) => (id.clone(), id),
            // '/' is in no run name, so run keys never collide with plain ids.
            GenomeRef::InRun { run, id } => (format!("{run}/{id}"), id),
        };
        let id_key = &key;
        {
            let mut cache = self.cache.lock();
            cache.clock += 1;
            let now = cache.clock;
            if let Some((genome, used)) = cache.entries.get_mut(id_key) {
                *used = now;
                return Ok(genome.clone());
            }
        }
        // Fetch and compile outside the lock; two workers racing on one id both compile it,
        // which costs a little CPU and nothing else.
        let json = match genome {
            GenomeRef::InRun { run, .. } => self.run(run)?.get(id),
            _ => self.source.get(id),
        }
        .map_err(|e| Error::new(e.to_string()))?;
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
        cache.entries.insert(key, (compiled.clone(), now));
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
