//! Streaming renders: a [`RenderJob`] runs on the [`Scheduler`]'s rayon pool and hands its
//! blocks to the consumer (the server's event loop) through a bounded SPSC ring.
//!
//! Workers take jobs earliest deadline first (EDF). A job's deadline is when its client needs
//! what it renders next:
//! - a new job: its creation plus [`START_BUDGET`];
//! - a job that has sent its first chunk: that moment plus the audio time of the frames it
//!   has rendered, so a paced client's stream is due when its playback gets there, and a
//!   greedy client that reads far ahead is due late: it gets spare capacity only;
//! - a job still preparing after a turn (its whole-duration outputs): its start budget for
//!   its first [`PREPARE_GRACE`] of preparation, so a render that prepares for tens of
//!   milliseconds (10 s of a convolver genome) gets its first chunk out in one go; past that,
//!   the later of its start budget and the end of that turn plus the preparation time spent
//!   so far, so a heavy preparation (a long convolver render) backs off in proportion to its
//!   cost and lighter renders go first.
//!
//! No worker ever waits for a consumer, and no job holds a worker for long:
//! - the worker pushes blocks until the ring is full, then returns the job to the consumer as
//!   [`JobEvent::Parked`]; the consumer resubmits it once it has drained the ring below half,
//!   so a stream whose client is far ahead costs nothing;
//! - a job renders at most [`SLICE_BLOCKS`] blocks or about [`RENDER_TURN`] per turn, and
//!   prepares for at most about [`PREPARE_TURN`] per turn, then queues itself again under its
//!   new deadline;
//! - a job's first rendering turn renders [`FIRST_SLICE_BLOCKS`] blocks and then returns the
//!   job to the consumer as if parked, so the consumer sends the first chunk before it
//!   resubmits the job: the rest of the render then cannot slow the first chunk's encoding
//!   and write on a small machine;
//! - the consumer is told that data is ready only when a ring goes from empty to non-empty
//!   (at most one [`JobEvent::Ready`] outstanding per stream), so wake-ups cost per burst;
//! - the cancel flag is read before every block and every preparation turn, so cancel and
//!   disconnect take effect within one block or turn, and free the render's memory.
//!
//! The per-block path (render, flag load, ring push) does not allocate, lock or log.

use std::cmp::Ordering as Order;
use std::collections::BinaryHeap;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use rtrb::{Consumer, Producer, RingBuffer};

use super::budget::{Account, Demand, Refusal, Reservation, Resource, MICROCORES};
use super::cpu_cost::{thread_cpu, Overhead};
use super::{CompiledGenome, Preparation, Render, RenderRequest, Stats};
use crate::dsp::RENDER_QUANTUM;
use crate::error::Error;
use crate::gpu::CppnBackend;

/// One render quantum of samples; the last block of a render is zero-padded.
pub type Block = [f32; RENDER_QUANTUM];

/// Ring capacity in blocks: 64 x 128 frames = 8192 frames (171 ms of audio, 32 KiB) per
/// stream. Two default chunks (4096 frames) fit, so a reader that keeps up never parks the job.
pub const RING_BLOCKS: usize = 64;

/// Blocks a job renders per turn on a worker before it yields to other jobs: 128 blocks are
/// 16384 frames (0.34 s of audio), a few milliseconds of work for typical genomes.
pub const SLICE_BLOCKS: usize = 128;

/// About how long a rendering turn after the first lasts at most (the clock is read every
/// [`CLOCK_BLOCKS`] blocks): under 1024 soak players on 2 cores, 128 blocks of the costliest
/// fixture genomes took 8-40 ms of wall time (about a thousand such turns in a 20 s run),
/// holding off the streams due meanwhile; with this bound, 17.
pub const RENDER_TURN: Duration = Duration::from_millis(2);

/// Blocks between two reads of the clock in a rendering turn.
const CLOCK_BLOCKS: usize = 8;

/// Blocks of a job's first rendering turn: one default chunk (4096 frames). The job then goes
/// back to its consumer ([`JobEvent::Parked`]) until that chunk is written, so a burst of new
/// requests gets every first chunk out before any of them renders further.
pub const FIRST_SLICE_BLOCKS: usize = 32;

/// Audio a render has rendered before its measured CPU cost replaces its estimate: a quarter
/// of a second is dozens of blocks, enough to average over one block's noise.
pub const MEASURE_AFTER_SECONDS: f64 = 0.25;

/// A new job's deadline is its creation plus this: the time its first chunk is due.
pub const START_BUDGET: Duration = Duration::from_millis(10);

/// About how long one preparation turn evaluates whole-duration outputs before the job queues
/// again (it stops at the first piece boundary past it; a piece is 4096 samples of the
/// outputs, well under a millisecond for the fixture genomes, and idle workers help with the
/// turn's pieces: render/pieces.rs).
pub const PREPARE_TURN: Duration = Duration::from_millis(2);

/// Preparation a job does under its start deadline before its deadline backs off: enough for
/// a 10 s render of a convolver genome on a loaded 2-core machine (tens of milliseconds), and
/// a bound on how long a heavy one holds the workers from the renders due after it. Backing
/// off from the first turn, first chunks at 256 clients had a p99 of 107-127 ms; with 100 ms
/// of grace 43-45 ms, with these 50 ms 53-60 ms in a longer run (benches/README.md, soak).
pub const PREPARE_GRACE: Duration = Duration::from_millis(50);

/// Most events a stream can have outstanding at once: one `Ready`, one `Parked`, one final
/// `Finished`/`Failed`/`Refused`. An event channel sized `EVENTS_PER_STREAM * streams` never fills.
pub const EVENTS_PER_STREAM: usize = 3;

/// Fetches and compiles the genome of a job, on the worker that first runs it (storage and
/// caching belong to the caller; the engine only needs the result).
pub type Prepare = Box<dyn FnOnce() -> Result<Arc<CompiledGenome>, Error> + Send>;

/// State shared between a job and its consumer.
#[derive(Debug, Default)]
pub struct StreamShared {
    cancelled: AtomicBool,
    /// Set by the worker when it sends `Ready`, cleared by the consumer when it takes it.
    ready_sent: AtomicBool,
}

impl StreamShared {
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// What a job tells its consumer. `id` is the consumer's own stream id.
pub enum JobEvent {
    /// The ring went from empty to non-empty.
    Ready(u64),
    /// The ring is full, or the job's first turn is over; resubmit the job when the ring has
    /// room again (at most half full), after sending what was drained.
    Parked(u64, RenderJob),
    /// Every block is in the ring.
    Finished(u64, Finished),
    /// The render could not start (genome missing or unrenderable) or failed.
    Failed(u64, Error),
    /// The render does not fit its account's budget now, or ever.
    Refused(u64, Refusal),
}

/// Summary of a finished render.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    pub stats: Stats,
    pub total_frames: usize,
    /// Genome fetch and compile, graph build and CPPN evaluation.
    pub prepare: Duration,
    /// Rendering blocks (CPU time of the turns, preparation excluded): times the
    /// scheduler's [`Overhead`] and over the audio's duration, the share of a core the render
    /// needs to play in real time.
    pub rendering: Duration,
    /// From the job's creation to its last block.
    pub total: Duration,
}

enum Stage {
    Pending(Prepare, RenderRequest, CppnBackend),
    /// Evaluating whole-duration outputs, a turn at a time.
    Preparing(Box<Preparation<'static>>, CppnBackend),
    Running(Box<Render>),
    /// Only while one stage is being turned into the next.
    Moving,
}

/// A render in flight: its stage, the producing end of its ring, and its shared flags.
pub struct RenderJob {
    id: u64,
    stage: Stage,
    producer: Producer<Block>,
    shared: Arc<StreamShared>,
    created: Instant,
    /// Preparation time so far (summed over turns).
    prepare: Duration,
    /// When the first chunk went to the consumer: the stream's playback clock starts here.
    clock_start: Option<Instant>,
    /// Frames per second of the render, for its playback clock.
    sample_rate: f64,
    /// When the job is due: set when it is queued (see the module doc).
    deadline: Instant,
    /// Where the render reserves its memory before preparing; `None` reserves nothing.
    account: Option<Arc<Account>>,
    /// Held for as long as the job exists, so every way a render ends releases it.
    reservation: Option<Reservation>,
    /// The share of the cores the render was accepted with ([`Resource::Cpu`]), replaced by
    /// its measured cost as it renders; held as long as the job exists.
    cpu: Option<Reservation>,
    /// CPU time of the rendering turns so far.
    rendering: Duration,
}

/// Bytes of a stream's ring, reserved with the render.
pub const RING_BYTES: u64 = (RING_BLOCKS * RENDER_QUANTUM * 4) as u64;

/// The consumer's end of a stream.
pub struct StreamHandle {
    pub consumer: Consumer<Block>,
    pub shared: Arc<StreamShared>,
}

impl StreamHandle {
    /// Call after draining the ring to empty: re-arms the `Ready` notification. Returns true
    /// when blocks arrived meanwhile (drain again, they will not be announced).
    pub fn rearm(&mut self) -> bool {
        self.shared.ready_sent.store(false, Ordering::Relaxed);
        // Pairs with the fence after the worker's push: either this side sees the new block,
        // or the worker's swap sees `false` and sends `Ready`. Without both fences each side
        // could read the other's stale value and the wake-up would be lost.
        fence(Ordering::SeqCst);
        !self.consumer.is_empty()
    }
}

/// A new stream: the job to submit and the handle to read it with. `backend` evaluates the
/// CPPN outputs.
pub fn stream(
    id: u64,
    request: RenderRequest,
    backend: CppnBackend,
    prepare: Prepare,
) -> (RenderJob, StreamHandle) {
    let (producer, consumer) = RingBuffer::new(RING_BLOCKS);
    let shared = Arc::new(StreamShared::default());
    let created = Instant::now();
    let job = RenderJob {
        id,
        sample_rate: f64::from(request.sample_rate),
        stage: Stage::Pending(prepare, request, backend),
        producer,
        shared: shared.clone(),
        created,
        prepare: Duration::ZERO,
        clock_start: None,
        deadline: created + START_BUDGET,
        account: None,
        reservation: None,
        cpu: None,
        rendering: Duration::ZERO,
    };
    (job, StreamHandle { consumer, shared })
}

impl RenderJob {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Makes the job reserve its estimated memory ([`super::RenderPlan::memory`]) from
    /// `account` once its graph is built and before anything whole-duration is allocated; a
    /// refusal ends it with [`JobEvent::Refused`].
    pub fn with_account(mut self, account: Arc<Account>) -> RenderJob {
        self.account = Some(account);
        self
    }

    /// Makes the job hold `cpu` ([`Resource::Cpu`], the estimate it was accepted with) until
    /// it ends, adjusted to its measured cost as it renders.
    pub fn with_cpu(mut self, cpu: Reservation) -> RenderJob {
        self.cpu = Some(cpu);
        self
    }

    /// Replaces the CPU the job holds with its measured cost (its turns' CPU times the
    /// process's `overhead`), once it has rendered enough to measure
    /// ([`MEASURE_AFTER_SECONDS`]), whenever the cost is above what it holds and when it is
    /// below by more than a quarter: a render never holds less than it costs, and a steady one
    /// takes the budget's lock only when its cost rises (at most once per turn, never per
    /// block).
    fn measure_cpu(&mut self, overhead: f64) {
        let (Some(cpu), Stage::Running(render)) = (&mut self.cpu, &self.stage) else {
            return;
        };
        let audio = render.frames_rendered() as f64 / self.sample_rate;
        if audio < MEASURE_AFTER_SECONDS {
            return;
        }
        let cost = (self.rendering.as_secs_f64() * overhead / audio * MICROCORES as f64) as u64;
        let held = cpu.amount().get(Resource::Cpu);
        if cost > held || cost < held - held / 4 {
            cpu.set(Resource::Cpu, cost);
        }
    }

    /// What the job has reserved (nothing before its first turn).
    pub fn reserved(&self) -> Demand {
        self.reservation
            .as_ref()
            .map_or(Demand::default(), Reservation::amount)
    }

    /// When the job is due, as of `now` (see the module doc).
    fn due(&self, now: Instant) -> Instant {
        let start = self.created + START_BUDGET;
        match (&self.stage, self.clock_start) {
            (Stage::Running(render), Some(clock)) => {
                let played = render.frames_rendered() as f64 / self.sample_rate;
                clock + Duration::from_secs_f64(played)
            }
            (Stage::Preparing(..), _) if self.prepare < PREPARE_GRACE => start,
            (Stage::Preparing(..), _) => start.max(now + self.prepare),
            _ => start,
        }
    }
}

/// How a turn's rendering ended.
enum SliceEnd {
    Cancelled,
    Finished,
    /// The ring is full.
    Full,
    /// The slice is rendered.
    Sliced,
}

/// Why a job could not start.
enum StartFailed {
    Error(Error),
    Refused(Refusal),
}

/// A queued job, ordered for a max-heap so that the earliest deadline comes out first (ties:
/// the job queued first).
struct Queued {
    deadline: Instant,
    seq: u64,
    job: RenderJob,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Order::Equal
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Order> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Order {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// Runs render jobs on a rayon pool and reports to one consumer through `events` and `wake`.
#[derive(Clone)]
pub struct Scheduler {
    pool: Arc<rayon::ThreadPool>,
    events: Sender<JobEvent>,
    wake: Arc<dyn Fn() + Send + Sync>,
    queues: Arc<Queues>,
    overhead: Arc<Overhead>,
}

/// Jobs waiting for a worker, by deadline. Each stream has at most one job here (a job is
/// running, parked with its consumer, or queued), so the heap holds at most as many jobs as
/// there are streams. The lock is taken once per turn (up to [`SLICE_BLOCKS`] blocks or one
/// [`PREPARE_TURN`]), never per block.
#[derive(Default)]
struct Queues {
    heap: Mutex<Heap>,
}

#[derive(Default)]
struct Heap {
    jobs: BinaryHeap<Queued>,
    /// Jobs pushed so far: the tie-breaker.
    seq: u64,
}

impl Queues {
    fn push(&self, job: RenderJob) {
        let deadline = job.deadline;
        let mut heap = self.heap.lock();
        heap.seq += 1;
        let seq = heap.seq;
        heap.jobs.push(Queued { deadline, seq, job });
    }

    /// The job with the earliest deadline.
    fn next(&self) -> Option<RenderJob> {
        self.heap.lock().jobs.pop().map(|q| q.job)
    }

    /// Takes the cancelled jobs out of the heap.
    fn take_cancelled(&self) -> Vec<RenderJob> {
        let mut heap = self.heap.lock();
        let (cancelled, kept): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut heap.jobs)
            .into_vec()
            .into_iter()
            .partition(|q| q.job.shared.is_cancelled());
        heap.jobs = kept.into();
        cancelled.into_iter().map(|q| q.job).collect()
    }
}

impl Scheduler {
    /// `events` should hold [`EVENTS_PER_STREAM`] events per stream the consumer admits;
    /// `wake` is called after an event is sent.
    pub fn new(
        pool: Arc<rayon::ThreadPool>,
        events: Sender<JobEvent>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Scheduler {
        Scheduler {
            pool,
            events,
            wake,
            queues: Arc::default(),
            overhead: Arc::default(),
        }
    }

    /// The process's CPU per CPU of rendering turns; the consumer calibrates it.
    pub fn overhead(&self) -> &Overhead {
        &self.overhead
    }

    pub fn pool(&self) -> &Arc<rayon::ThreadPool> {
        &self.pool
    }

    /// Jobs waiting for a worker: (yet to send a first chunk, playing).
    pub fn waiting(&self) -> (usize, usize) {
        let heap = self.queues.heap.lock();
        let starting = heap
            .jobs
            .iter()
            .filter(|q| q.job.clock_start.is_none())
            .count();
        (starting, heap.jobs.len() - starting)
    }

    /// Queues `job` under its deadline; a worker runs it after the jobs due before it.
    pub fn submit(&self, mut job: RenderJob) {
        job.deadline = job.due(Instant::now());
        self.queues.push(job);
        // One task per queued job, so every task finds one; which job it runs is decided
        // when it starts, by deadline.
        let this = self.clone();
        self.pool.spawn_fifo(move || {
            // None: the job this task was spawned for was discarded as cancelled.
            let Some(job) = this.queues.next() else {
                return;
            };
            if let Some(job) = this.run_turn(job) {
                this.submit(job);
            }
        });
    }

    /// Drops the queued jobs whose stream was cancelled now, instead of when their deadline
    /// comes: a far-ahead stream's job may wait long, and it holds its render's memory and
    /// CPU reservations until dropped. O(queued jobs); the consumer calls it when it cancels
    /// a stream whose job is queued.
    pub fn discard_cancelled(&self) {
        // Dropped here, outside the heap's lock: a drop takes the budget's.
        drop(self.queues.take_cancelled());
    }

    fn send(&self, event: JobEvent) {
        // A send only fails when the consumer is gone, and then nobody wants the event.
        if self.events.send(event).is_ok() {
            (self.wake)();
        }
    }

    /// One turn of `job`; `Some` when it should queue again.
    fn run_turn(&self, mut job: RenderJob) -> Option<RenderJob> {
        if job.shared.is_cancelled() {
            return None;
        }
        if matches!(job.stage, Stage::Pending(..)) {
            if let Err(end) = self.start(&mut job) {
                self.send(match end {
                    StartFailed::Error(e) => JobEvent::Failed(job.id, e),
                    StartFailed::Refused(r) => JobEvent::Refused(job.id, r),
                });
                return None;
            }
            // The genome lookup may have taken a while; the costly part is still to come.
            if job.shared.is_cancelled() {
                return None;
            }
        }
        if let Stage::Preparing(preparation, _) = &mut job.stage {
            let started = Instant::now();
            let helpers = self.pool.current_num_threads() - 1;
            let done = preparation.step(Some(started + PREPARE_TURN), helpers);
            if !done {
                job.prepare += started.elapsed();
                return Some(job);
            }
            let Stage::Preparing(preparation, backend) =
                std::mem::replace(&mut job.stage, Stage::Moving)
            else {
                unreachable!()
            };
            match preparation.finish(&backend) {
                Ok(render) => job.stage = Stage::Running(Box::new(render)),
                Err(e) => {
                    self.send(JobEvent::Failed(job.id, e));
                    return None;
                }
            }
            job.prepare += started.elapsed();
        }
        let first_turn = job.clock_start.is_none();
        let slice = if first_turn {
            FIRST_SLICE_BLOCKS
        } else {
            SLICE_BLOCKS
        };
        let started = thread_cpu();
        // A later turn also ends after about RENDER_TURN, so that an expensive genome's blocks
        // cannot hold a worker for tens of milliseconds on a loaded machine; the first turn
        // renders its whole first chunk.
        let until = (!first_turn).then(|| Instant::now() + RENDER_TURN);
        let end = self.render_slice(&mut job, slice, until);
        let spent = thread_cpu().saturating_sub(started);
        job.rendering += spent;
        self.overhead.add_turn(spent);
        match end {
            SliceEnd::Cancelled => None,
            SliceEnd::Finished => {
                let Stage::Running(render) = &job.stage else {
                    unreachable!()
                };
                let finished = Finished {
                    stats: render.stats(),
                    total_frames: render.total_frames(),
                    prepare: job.prepare,
                    rendering: job.rendering,
                    total: job.created.elapsed(),
                };
                self.send(JobEvent::Finished(job.id, finished));
                None
            }
            SliceEnd::Full => {
                job.measure_cpu(self.overhead.factor());
                let id = job.id;
                self.send(JobEvent::Parked(id, job));
                None
            }
            SliceEnd::Sliced if first_turn => {
                // The first chunk goes on the wire before this render takes a core again;
                // its playback starts about now.
                job.clock_start = Some(Instant::now());
                self.send(JobEvent::Parked(job.id, job));
                None
            }
            SliceEnd::Sliced => {
                job.measure_cpu(self.overhead.factor());
                Some(job)
            }
        }
    }

    /// Renders up to `slice` blocks of a running job into its ring, and with `until`, no more
    /// once that moment has passed.
    fn render_slice(&self, job: &mut RenderJob, slice: usize, until: Option<Instant>) -> SliceEnd {
        let Stage::Running(render) = &mut job.stage else {
            unreachable!("a job renders once prepared")
        };
        let mut block: Block = [0.0; RENDER_QUANTUM];
        for i in 0..slice {
            // The clock is read once per CLOCK_BLOCKS blocks, not per block.
            if i % CLOCK_BLOCKS == CLOCK_BLOCKS - 1 && until.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            if job.shared.is_cancelled() {
                return SliceEnd::Cancelled;
            }
            if render.is_finished() {
                return SliceEnd::Finished;
            }
            if job.producer.is_full() {
                return SliceEnd::Full;
            }
            let n = render.next_block(&mut block);
            block[n..].fill(0.0);
            if job.producer.push(block).is_err() {
                unreachable!("checked for room above; this is the only producer");
            }
            // At most one `Ready` until the consumer drains and re-arms: wake-ups per burst,
            // not per block. See `StreamHandle::rearm` for the fence.
            fence(Ordering::SeqCst);
            if !job.shared.ready_sent.swap(true, Ordering::Relaxed) {
                self.send(JobEvent::Ready(job.id));
            }
        }
        if render.is_finished() {
            return SliceEnd::Finished;
        }
        SliceEnd::Sliced
    }

    /// A pending job's cheap start: fetch and compile its genome, plan the render, reserve
    /// its memory, and set up the preparation (which allocates the whole-duration outputs).
    fn start(&self, job: &mut RenderJob) -> Result<(), StartFailed> {
        let Stage::Pending(prepare, request, backend) =
            std::mem::replace(&mut job.stage, Stage::Moving)
        else {
            unreachable!()
        };
        let started = Instant::now();
        let genome = prepare().map_err(StartFailed::Error)?;
        let plan = Render::plan_shared(genome, &request).map_err(StartFailed::Error)?;
        if let Some(account) = &job.account {
            let bytes = plan.memory(&backend).total() + RING_BYTES;
            let reservation = account
                .reserve(Demand::memory(bytes))
                .map_err(StartFailed::Refused)?;
            job.reservation = Some(reservation);
        }
        let preparation = plan.prepare(&backend);
        job.stage = Stage::Preparing(Box::new(preparation), backend);
        job.prepare += started.elapsed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{bounded, Receiver};

    fn scheduler() -> (Scheduler, Receiver<JobEvent>) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (tx, rx) = bounded(EVENTS_PER_STREAM);
        (Scheduler::new(Arc::new(pool), tx, Arc::new(|| {})), rx)
    }

    fn job(seconds: f64) -> (RenderJob, StreamHandle) {
        let json = crate::fixtures::genome_json("01M88X7T6Y68CC64GC56PAT2JM");
        let request = RenderRequest {
            duration: seconds,
            note_delta: 0.0,
            velocity: 1.0,
            seed: 1,
            ..RenderRequest::default()
        };
        let prepare: Prepare = Box::new(move || CompiledGenome::from_json(&json).map(Arc::new));
        stream(7, request, CppnBackend::Cpu, prepare)
    }

    /// The next event other than `Ready`.
    fn next_event(rx: &Receiver<JobEvent>) -> JobEvent {
        loop {
            match rx.recv_timeout(Duration::from_secs(30)).expect("an event") {
                JobEvent::Ready(id) => assert_eq!(id, 7),
                event => return event,
            }
        }
    }

    fn drain(handle: &mut StreamHandle) -> usize {
        let n = handle.consumer.slots();
        for _ in 0..n {
            handle.consumer.pop().unwrap();
        }
        n
    }

    #[test]
    fn a_rendering_turn_past_its_time_stops_at_the_next_clock_reading() {
        let (scheduler, rx) = scheduler();
        let (job, mut handle) = job(1.0);
        scheduler.submit(job);
        let JobEvent::Parked(7, mut job) = next_event(&rx) else {
            panic!("the first turn ends with the job handed back");
        };
        drain(&mut handle);
        let over = Some(Instant::now());
        assert!(matches!(
            scheduler.render_slice(&mut job, SLICE_BLOCKS, over),
            SliceEnd::Sliced
        ));
        assert_eq!(handle.consumer.slots(), CLOCK_BLOCKS - 1);
        // Without a time bound, the turn goes on until the ring is full.
        assert!(matches!(
            scheduler.render_slice(&mut job, SLICE_BLOCKS, None),
            SliceEnd::Full
        ));
        assert_eq!(handle.consumer.slots(), RING_BLOCKS);
    }

    #[test]
    fn first_turn_hands_the_job_back_after_one_chunk_and_parks_on_a_full_ring() {
        let (scheduler, rx) = scheduler();
        let (job, mut handle) = job(1.0);
        scheduler.submit(job);
        let JobEvent::Parked(7, job) = next_event(&rx) else {
            panic!("the first turn ends with the job handed back");
        };
        // Exactly one default chunk, and nothing more while the consumer holds the job.
        assert_eq!(handle.consumer.slots(), FIRST_SLICE_BLOCKS);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(handle.consumer.slots(), FIRST_SLICE_BLOCKS);

        // Resubmitted without draining, the job fills the ring and parks again.
        scheduler.submit(job);
        let JobEvent::Parked(7, mut job) = next_event(&rx) else {
            panic!("a full ring parks the job");
        };
        assert_eq!(handle.consumer.slots(), RING_BLOCKS);

        let mut blocks = 0;
        loop {
            blocks += drain(&mut handle);
            handle.rearm();
            scheduler.submit(job);
            match next_event(&rx) {
                JobEvent::Parked(7, parked) => job = parked,
                JobEvent::Finished(7, finished) => {
                    blocks += drain(&mut handle);
                    assert_eq!(finished.total_frames, 48_000);
                    assert_eq!(blocks, 48_000usize.div_ceil(RENDER_QUANTUM));
                    return;
                }
                _ => panic!("only Parked or Finished"),
            }
        }
    }

    /// A render of `genome` streamed as `id`.
    fn job_of(id: u64, genome: &str, seconds: f64) -> (RenderJob, StreamHandle) {
        let json = crate::fixtures::genome_json(genome);
        let request = RenderRequest {
            duration: seconds,
            ..RenderRequest::default()
        };
        let prepare: Prepare = Box::new(move || CompiledGenome::from_json(&json).map(Arc::new));
        stream(id, request, CppnBackend::Cpu, prepare)
    }

    #[test]
    fn a_long_preparation_lets_a_later_render_send_its_first_chunk_first() {
        // One worker, so the order of the first chunks is the scheduler's alone. The heavy
        // render's impulse response is 120 s of CPPN output: far more than one turn.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let (tx, rx) = bounded(2 * EVENTS_PER_STREAM);
        let scheduler = Scheduler::new(Arc::new(pool), tx, Arc::new(|| {}));
        let (heavy, _heavy_handle) = job_of(1, "01M88X8EMSXWZE35NP3PBFS4V7", 120.0);
        let (light, _light_handle) = job_of(2, "01M88X7T6Y68CC64GC56PAT2JM", 1.0);
        scheduler.submit(heavy);
        std::thread::sleep(Duration::from_millis(1));
        scheduler.submit(light);
        let mut first_chunks = Vec::new();
        while first_chunks.len() < 2 {
            match rx.recv_timeout(Duration::from_secs(60)).expect("an event") {
                JobEvent::Parked(id, _) => first_chunks.push(id),
                JobEvent::Ready(_) => {}
                _ => panic!("only Ready and Parked before the first chunks"),
            }
        }
        assert_eq!(first_chunks, [2, 1]);
    }

    #[test]
    fn jobs_come_out_earliest_deadline_first() {
        let queues = Queues::default();
        let now = Instant::now();
        for (id, ms) in [(1, 30), (2, 10), (3, 20), (4, 10)] {
            let (mut job, _handle) = job(0.1);
            job.id = id;
            job.deadline = now + Duration::from_millis(ms);
            queues.push(job);
        }
        let order: Vec<u64> = std::iter::from_fn(|| queues.next().map(|j| j.id)).collect();
        // Equal deadlines: the first queued first.
        assert_eq!(order, [2, 4, 3, 1]);
    }

    #[test]
    fn a_playing_stream_is_due_when_its_playback_reaches_its_next_block() {
        let (scheduler, rx) = scheduler();
        let (job, _handle) = job(1.0);
        scheduler.submit(job);
        let JobEvent::Parked(7, job) = next_event(&rx) else {
            panic!("the first turn ends with the job handed back");
        };
        let clock = job
            .clock_start
            .expect("the playback clock starts with the first chunk");
        // 32 blocks of 128 frames at 48 kHz: 85.33 ms of audio rendered.
        let due = job.due(Instant::now()) - clock;
        let played = Duration::from_secs_f64((FIRST_SLICE_BLOCKS * RENDER_QUANTUM) as f64 / 48e3);
        assert_eq!(due, played);
    }

    #[test]
    fn a_render_shorter_than_the_first_turn_finishes_in_it() {
        let (scheduler, rx) = scheduler();
        let (job, mut handle) = job(0.05);
        scheduler.submit(job);
        let JobEvent::Finished(7, finished) = next_event(&rx) else {
            panic!("a 2400-frame render finishes in its first turn");
        };
        assert_eq!(finished.total_frames, 2400);
        assert_eq!(drain(&mut handle), 2400usize.div_ceil(RENDER_QUANTUM));
    }
}
