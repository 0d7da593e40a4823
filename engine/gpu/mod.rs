//! Vulkan compute evaluation of the flat CPPN program, with the CPU evaluator as fallback.
//!
//! [`Gpu::open`] loads Vulkan at run time (`ash::Entry::load`), picks a device and starts the
//! one GPU thread that owns it. Callers submit CPPN jobs over a bounded channel
//! ([`JOB_QUEUE`]); jobs that are queued together run in one submission. Any Vulkan error
//! (device loss, a hung fence, an allocation failure) fails the jobs in flight and disables
//! the device for the rest of the process; [`CppnBackend`] then evaluates on the CPU.
//!
//! Precision: the shader computes in f32. The periodic input's phase is reduced exactly on the
//! host (see [`program::phase_fixed`]), so the GPU matches the CPU to f32 rounding, not to the
//! error of an f32 `sin(2 pi f t)`. engine/gpu/README.md states the measured tolerance.

pub mod program;
mod vulkan;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{Receiver, Sender};

use crate::cppn::{self, Program};
use crate::error::Error;
pub use program::GpuProgram;

/// Jobs that may wait for the GPU thread; a full queue blocks the submitter (backpressure).
pub const JOB_QUEUE: usize = 64;
/// Most job pieces in one submission (the dispatch's rows).
pub const MAX_BATCH: usize = 64;

/// Vulkan's device types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Discrete,
    Integrated,
    Virtual,
    /// A software device such as Mesa's lavapipe.
    Cpu,
    Other,
}

/// The device a [`Gpu`] runs on.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    /// Index in Vulkan's enumeration order (what `KRS_VULKAN_DEVICE=<index>` selects).
    pub index: usize,
    pub name: String,
    pub kind: DeviceKind,
}

type Reply = Result<Vec<Vec<f32>>, Error>;

struct Job {
    program: GpuProgram,
    n: usize,
    phase0: u64,
    step: u64,
    velocity: f32,
    reply: Sender<Reply>,
}

enum Msg {
    Job(Box<Job>),
    /// Makes the thread behave as after a device loss.
    #[cfg(test)]
    Poison,
    /// Lowers the output buffer's bound, so tests can split jobs without huge buffers.
    #[cfg(test)]
    LimitOutput(usize),
}

/// A handle to the GPU thread. Cloning is cheap; the thread and the device go away when the
/// last handle is dropped.
#[derive(Clone)]
pub struct Gpu {
    tx: Sender<Msg>,
    device: Arc<DeviceInfo>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("device", &self.device).finish()
    }
}

/// A submitted job; [`PendingCppn::wait`] blocks until its buffers are ready.
pub struct PendingCppn {
    rx: Receiver<Reply>,
}

impl PendingCppn {
    /// One buffer of `n` samples per requested output, in request order.
    pub fn wait(self) -> Reply {
        self.rx
            .recv()
            .unwrap_or_else(|_| Err(Error("the GPU thread stopped".into())))
    }
}

impl Gpu {
    /// Opens the device named by `KRS_VULKAN_DEVICE` (an index or a case-insensitive name
    /// substring), else the best one: discrete, integrated, virtual, then CPU (lavapipe).
    pub fn open() -> Result<Gpu, Error> {
        Gpu::open_with(std::env::var("KRS_VULKAN_DEVICE").ok().as_deref())
    }

    /// As [`Gpu::open`] with an explicit selector instead of the environment variable.
    pub fn open_with(selector: Option<&str>) -> Result<Gpu, Error> {
        let selector = selector.map(str::to_owned);
        let (tx, rx) = crossbeam_channel::bounded::<Msg>(JOB_QUEUE);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        // The context holds raw mapped pointers and is created, used and dropped on this
        // thread only.
        std::thread::Builder::new()
            .name("krs-gpu".into())
            .spawn(move || match vulkan::Context::open(selector.as_deref()) {
                Ok(ctx) => {
                    let _ = ready_tx.send(Ok(ctx.info.clone()));
                    serve(ctx, rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| Error(format!("cannot start the GPU thread: {e}")))?;
        let device = ready_rx
            .recv()
            .map_err(|_| Error("the GPU thread stopped while opening Vulkan".into()))??;
        Ok(Gpu {
            tx,
            device: Arc::new(device),
        })
    }

    /// The process-wide GPU, opened on first use with [`Gpu::open`]. When that fails, says why
    /// once on stderr and returns the same error on every call.
    pub fn shared() -> Result<Gpu, Error> {
        static SHARED: OnceLock<Result<Gpu, Error>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let r = Gpu::open();
                if let Err(e) = &r {
                    eprintln!("krs-engine: no GPU, CPPNs are evaluated on the CPU: {e}");
                }
                r
            })
            .clone()
    }

    pub fn device(&self) -> &DeviceInfo {
        &self.device
    }

    /// Queues the evaluation of `outputs` (output indices) for all `n` samples of a render at
    /// one frequency, as [`cppn::evaluate_parallel`] computes them. Blocks only while
    /// [`JOB_QUEUE`] jobs are already waiting.
    pub fn submit(
        &self,
        program: &Program,
        input_periods: f64,
        velocity: f64,
        n: usize,
        outputs: &[usize],
    ) -> Result<PendingCppn, Error> {
        if n < 2 {
            return Err(Error(format!("a render has at least 2 samples, not {n}")));
        }
        if n > i32::MAX as usize / 2 {
            // The shader forms 2c - (n - 1) in i32.
            return Err(Error(format!("{n} samples are too many for the GPU path")));
        }
        let program = GpuProgram::new(program, outputs)?;
        let (phase0, step) = program::phase_fixed(input_periods, n);
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Msg::Job(Box::new(Job {
                program,
                n,
                phase0,
                step,
                velocity: velocity as f32,
                reply,
            })))
            .map_err(|_| Error("the GPU thread stopped".into()))?;
        Ok(PendingCppn { rx })
    }

    /// [`Gpu::submit`] and wait.
    pub fn evaluate(
        &self,
        program: &Program,
        input_periods: f64,
        velocity: f64,
        n: usize,
        outputs: &[usize],
    ) -> Reply {
        self.submit(program, input_periods, velocity, n, outputs)?
            .wait()
    }

    #[cfg(test)]
    fn poison(&self) {
        self.tx.send(Msg::Poison).unwrap();
    }
}

/// Where a render's CPPN outputs are computed. The CPU is the default; `Gpu` falls back to
/// the CPU for any job the GPU cannot do, with one line on stderr the first time.
#[derive(Clone, Debug, Default)]
pub enum CppnBackend {
    #[default]
    Cpu,
    Gpu(Gpu),
}

impl CppnBackend {
    /// The shared GPU if it is a real one, else the CPU. A software device (lavapipe) is
    /// several times slower than the CPU evaluator on the same cores (engine/gpu/README.md),
    /// so it is used only when `KRS_VULKAN_DEVICE` asks for a device explicitly.
    pub fn auto() -> CppnBackend {
        let selector = std::env::var("KRS_VULKAN_DEVICE")
            .ok()
            .filter(|s| !s.trim().is_empty());
        // Probe before opening, so a machine with only a software device never pays for one.
        if selector.is_none()
            && !vulkan::probe(None).is_ok_and(|device| device.kind != DeviceKind::Cpu)
        {
            return CppnBackend::Cpu;
        }
        match Gpu::shared() {
            Ok(g) => CppnBackend::Gpu(g),
            Err(_) => CppnBackend::Cpu,
        }
    }

    /// Starts the evaluation of `outputs` for `n` samples; see [`cppn::evaluate_parallel`].
    /// On the CPU this computes at once; on the GPU it queues, so that several calls before
    /// the first [`Evaluation::wait`] share one submission.
    pub fn start<'a>(
        &self,
        program: &'a Program,
        input_periods: f64,
        velocity: f64,
        n: usize,
        outputs: &'a [usize],
    ) -> Evaluation<'a> {
        let cpu = CpuArgs {
            program,
            input_periods,
            velocity,
            n,
            outputs,
        };
        match self {
            CppnBackend::Cpu => Evaluation(EvaluationState::Done(cpu.run())),
            CppnBackend::Gpu(gpu) => {
                match gpu.submit(program, input_periods, velocity, n, outputs) {
                    Ok(pending) => Evaluation(EvaluationState::Gpu(pending, cpu)),
                    Err(e) => {
                        warn_fallback(&e);
                        Evaluation(EvaluationState::Done(cpu.run()))
                    }
                }
            }
        }
    }

    /// [`CppnBackend::start`] and wait.
    pub fn evaluate(
        &self,
        program: &Program,
        input_periods: f64,
        velocity: f64,
        n: usize,
        outputs: &[usize],
    ) -> Vec<Vec<f32>> {
        self.start(program, input_periods, velocity, n, outputs)
            .wait()
    }
}

struct CpuArgs<'a> {
    program: &'a Program,
    input_periods: f64,
    velocity: f64,
    n: usize,
    outputs: &'a [usize],
}

impl CpuArgs<'_> {
    fn run(&self) -> Vec<Vec<f32>> {
        cppn::evaluate_parallel(
            self.program,
            self.input_periods,
            self.velocity,
            self.n,
            self.outputs,
        )
    }
}

/// A CPPN evaluation in progress (see [`CppnBackend::start`]).
pub struct Evaluation<'a>(EvaluationState<'a>);

enum EvaluationState<'a> {
    Done(Vec<Vec<f32>>),
    Gpu(PendingCppn, CpuArgs<'a>),
}

impl Evaluation<'_> {
    /// The output buffers; computed on the CPU if the GPU job failed.
    pub fn wait(self) -> Vec<Vec<f32>> {
        match self.0 {
            EvaluationState::Done(v) => v,
            EvaluationState::Gpu(pending, cpu) => pending.wait().unwrap_or_else(|e| {
                warn_fallback(&e);
                cpu.run()
            }),
        }
    }
}

fn warn_fallback(e: &Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("krs-engine: CPPN evaluated on the CPU instead of the GPU: {e}");
    }
}

/// Most work (samples x (ops + terms)) in one submission: about 10 s on lavapipe sharing two
/// cores, milliseconds on a hardware GPU, and well inside the fence timeout either way, so a
/// slow device is not mistaken for a hung one.
const MAX_WORK: usize = 1 << 28;

fn work_per_sample(j: &Job) -> usize {
    j.program.ops.len() + j.program.terms.len() + 1
}

/// A sample range of one job, as one row of a dispatch.
struct Piece {
    job: usize,
    start: usize,
    count: usize,
}

/// The GPU thread: takes the first waiting job, drains whatever else is queued (up to
/// [`MAX_BATCH`] jobs) and runs them together.
fn serve(ctx: vulkan::Context, rx: Receiver<Msg>) {
    let mut ctx = Some(ctx);
    let mut failure: Option<Error> = None;
    let mut batch: Vec<Box<Job>> = Vec::with_capacity(MAX_BATCH);
    let mut staging = Staging::default();
    while let Ok(first) = rx.recv() {
        let mut msgs = vec![first];
        while msgs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        batch.clear();
        for m in msgs {
            match m {
                Msg::Job(j) => batch.push(j),
                #[cfg(test)]
                Msg::Poison => {
                    failure = Some(Error("device lost (simulated)".into()));
                    std::mem::forget(ctx.take());
                }
                #[cfg(test)]
                Msg::LimitOutput(floats) => {
                    if let Some(c) = &mut ctx {
                        c.max_out_floats = floats;
                    }
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let result = match (&mut ctx, &failure) {
            (Some(c), None) => run_batch(c, &batch, &mut staging),
            (_, f) => Err(f.clone().unwrap_or_else(|| Error("no device".into()))),
        };
        match result {
            Ok(outputs) => {
                for (job, out) in batch.drain(..).zip(outputs) {
                    let _ = job.reply.send(Ok(out));
                }
            }
            Err(e) => {
                if failure.is_none() {
                    // The device may still be executing (a timed-out fence) or be gone;
                    // destroying objects in use is undefined, so the context is leaked once.
                    std::mem::forget(ctx.take());
                    failure = Some(Error(format!("GPU disabled after an error: {e}")));
                }
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Host copies of a submission's buffers, reused across submissions.
#[derive(Default)]
struct Staging {
    jobs: Vec<[u32; 16]>,
    ops: Vec<[u32; 4]>,
    terms: Vec<[u32; 2]>,
    out_regs: Vec<u32>,
}

/// Runs every job of `batch` to completion, in as many submissions as the output buffer's
/// bound requires, and returns each job's output buffers.
fn run_batch(
    ctx: &mut vulkan::Context,
    batch: &[Box<Job>],
    staging: &mut Staging,
) -> Result<Vec<Vec<Vec<f32>>>, Error> {
    let cap = ctx.max_out_floats;
    let mut results: Vec<Vec<Vec<f32>>> = batch
        .iter()
        .map(|j| vec![vec![0.0f32; j.n]; j.program.out_regs.len()])
        .collect();
    // Split each job into pieces whose outputs fit the output buffer and whose work fits
    // one submission.
    let mut pieces = Vec::new();
    for (i, j) in batch.iter().enumerate() {
        let per_sample = j.program.out_regs.len().max(1);
        let most = (cap / per_sample).min(MAX_WORK / work_per_sample(j)).max(1);
        let mut start = 0;
        while start < j.n {
            let count = most.min(j.n - start);
            pieces.push(Piece {
                job: i,
                start,
                count,
            });
            start += count;
        }
    }
    let mut next = 0;
    while next < pieces.len() {
        staging.jobs.clear();
        staging.ops.clear();
        staging.terms.clear();
        staging.out_regs.clear();
        // (op range, out_regs start) of each job already uploaded in this submission.
        let mut placed: Vec<Option<(u32, u32, u32)>> = vec![None; batch.len()];
        let mut out_floats = 0usize;
        let mut longest = 0usize;
        let mut work = 0usize;
        let mut registers = 0usize;
        let first = next;
        while next < pieces.len() && next - first < MAX_BATCH {
            let piece = &pieces[next];
            let j = &batch[piece.job];
            let floats = piece.count * j.program.out_regs.len();
            let piece_work = piece.count * work_per_sample(j);
            if next > first && (out_floats + floats > cap || work + piece_work > MAX_WORK) {
                break;
            }
            work += piece_work;
            registers = registers.max(j.program.registers);
            let (op_start, op_end, out_reg_start) = *placed[piece.job].get_or_insert_with(|| {
                let term_base = staging.terms.len() as u32;
                staging.terms.extend_from_slice(&j.program.terms);
                let op_start = staging.ops.len() as u32;
                staging.ops.extend(
                    j.program
                        .ops
                        .iter()
                        .map(|&[t, a, s, e]| [t, a, s + term_base, e + term_base]),
                );
                let out_reg_start = staging.out_regs.len() as u32;
                staging.out_regs.extend_from_slice(&j.program.out_regs);
                (op_start, staging.ops.len() as u32, out_reg_start)
            });
            let phase = program::phase_at(j.phase0, j.step, piece.start);
            staging.jobs.push([
                piece.start as u32,
                piece.count as u32,
                (j.n - 1) as u32,
                j.velocity.to_bits(),
                phase as u32,
                (phase >> 32) as u32,
                j.step as u32,
                (j.step >> 32) as u32,
                op_start,
                op_end,
                out_reg_start,
                j.program.out_regs.len() as u32,
                out_floats as u32,
                0,
                0,
                0,
            ]);
            out_floats += floats;
            longest = longest.max(piece.count);
            next += 1;
        }
        ctx.upload(vulkan::JOBS, &staging.jobs)?;
        ctx.upload(vulkan::OPS, &staging.ops)?;
        ctx.upload(vulkan::TERMS, &staging.terms)?;
        ctx.upload(vulkan::OUT_REGS, &staging.out_regs)?;
        let out = ctx.dispatch(staging.jobs.len() as u32, longest, out_floats, registers)?;
        for (row, piece) in staging.jobs.iter().zip(&pieces[first..next]) {
            let offset = row[12] as usize;
            for (k, buf) in results[piece.job].iter_mut().enumerate() {
                let src = &out[offset + k * piece.count..offset + (k + 1) * piece.count];
                buf[piece.start..piece.start + piece.count].copy_from_slice(src);
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests;
