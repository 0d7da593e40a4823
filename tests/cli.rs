//! The command line as a user types it: `render` from a file, from the embedded default and
//! from a kromosynth-cli database (all the same samples, and the fixtures' renders), `import`,
//! `list`, and one-line errors with a non-zero exit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use kromosynth_render_socket::audio_file;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kromosynth-render-socket"));
    c.env_remove("DB_PATH");
    c
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("krs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn render_to(genome: &str, args: &[&str], out: &Path) -> Vec<f32> {
    run(bin()
        .args(["render", "--genome", genome, "--out"])
        .arg(out)
        .args(args));
    audio_file::read(out).unwrap()
}

fn read_f32(path: &Path) -> Vec<f32> {
    audio_file::read(path).unwrap()
}

#[test]
fn render_reproduces_every_deterministic_fixture_render() {
    let deterministic: Vec<_> = fixtures::all()
        .into_iter()
        .filter(|f| !f.has_noise)
        .collect();
    let mut checked = 0;
    for f in &deterministic {
        let file = fixtures::genome_path(&f.id);
        for r in &f.renders {
            let out = temp(&format!("{}-{}.f32", f.id, r.file));
            let got = render_to(
                file.to_str().unwrap(),
                &[
                    "--duration",
                    &r.duration.to_string(),
                    "--note-delta",
                    &r.note_delta.to_string(),
                    "--velocity",
                    &r.velocity.to_string(),
                ],
                &out,
            );
            assert_bits_eq(&got, &r.samples(), &r.file);
            checked += 1;
        }
    }
    assert_eq!(checked, deterministic.len() * 4);
}

#[test]
fn file_embedded_id_and_database_give_the_same_samples() {
    let file = fixtures::genome_path(GENOME);
    let args = ["--duration", "1", "--note-delta", "-3", "--raw"];
    let from_file = render_to(file.to_str().unwrap(), &args, &temp("file.f32"));
    let from_embedded = render_to(GENOME, &args, &temp("embedded.f32"));
    assert_bits_eq(&from_embedded, &from_file, "embedded default vs file");
    assert_bits_eq(
        &from_file,
        &reference(GENOME, &request(1.0, -3.0, 0.5)),
        "cli vs engine",
    );

    // import -> list -> render round trip through a kromosynth-cli schema database.
    let db = temp("genomes.sqlite");
    let _ = std::fs::remove_file(&db);
    let out = run(bin()
        .args(["import", "--db"])
        .arg(&db)
        .arg(fixtures::dir())
        .arg(temp("does-not-exist.json")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 8 genome(s)"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped"),
        "index.json and the missing file: {stderr}"
    );
    let listed = run(bin().args(["list", "--db"]).arg(&db));
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids, genome_ids());
    let limited = run(bin().args(["list", "--limit", "2"]));
    assert_eq!(String::from_utf8_lossy(&limited.stdout).lines().count(), 2);
    let from_db = render_to(
        GENOME,
        &[&args[..], &["--db", db.to_str().unwrap()]].concat(),
        &temp("db.f32"),
    );
    assert_bits_eq(&from_db, &from_file, "database vs file");
    // DB_PATH works like --db.
    let out = temp("env.f32");
    run(bin()
        .env("DB_PATH", &db)
        .args(["render", "--genome", GENOME, "--out"])
        .arg(&out)
        .args(args));
    assert_bits_eq(&read_f32(&out), &from_file, "DB_PATH vs file");
}

#[test]
fn wav_output_is_float_mono_48k_and_normalized_by_default() {
    let out = temp("x.wav");
    let samples = render_to(GENOME, &["--duration", "0.5"], &out);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    assert_eq!(samples.len(), 24000);
    let mut want = reference(GENOME, &request(0.5, 0.0, 0.5));
    krs_engine::render::normalize_like_original(&mut want);
    assert_bits_eq(&samples, &want, "wav");
}

#[test]
fn unrenderable_input_exits_non_zero_with_one_line() {
    let broken = temp("broken.json");
    std::fs::write(&broken, br#"{"genome":{"asNEATPatch":"{}"}}"#).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--genome".into(), "NO_SUCH_ID".into()], "NO_SUCH_ID"),
        (
            vec!["--genome".into(), broken.to_str().unwrap().into()],
            "cannot be rendered",
        ),
        (
            vec![
                "--genome".into(),
                GENOME.into(),
                "--db".into(),
                "/nonexistent.sqlite".into(),
            ],
            "not found",
        ),
    ];
    for (args, needle) in cases {
        let out = bin()
            .arg("render")
            .args(&args)
            .args(["--duration", "1", "--out"])
            .arg(temp("never.f32"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let out = bin()
        .args(["render", "--genome", GENOME, "--duration", "-1", "--out"])
        .arg(temp("neg.f32"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("duration"));
}

/// The lavapipe ICD, when Mesa's software Vulkan driver is installed.
fn lavapipe() -> Option<PathBuf> {
    let icd = PathBuf::from("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json");
    icd.is_file().then_some(icd)
}

#[test]
fn render_gpu_without_vulkan_says_so_and_fails() {
    let out = bin()
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env_remove("KRS_VULKAN_DEVICE")
        .args([
            "render",
            "--genome",
            GENOME,
            "--duration",
            "0.1",
            "--gpu",
            "--out",
        ])
        .arg(temp("nogpu.f32"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: --gpu:") && stderr.contains("Vulkan"),
        "{stderr}"
    );
    // The default still renders, on the CPU.
    run(bin()
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .args(["render", "--genome", GENOME, "--duration", "0.1", "--out"])
        .arg(temp("nogpu-default.f32")));
}

#[test]
fn render_gpu_matches_render_cpu_on_every_fixture() {
    let Some(icd) = lavapipe() else {
        eprintln!("skipping render --gpu parity: no lavapipe ICD (mesa-vulkan-drivers) installed");
        return;
    };
    // Stated tolerance of the f32 Vulkan path against the f64 CPU path (engine/gpu/README.md).
    const MIN_SNR_DB: f64 = 120.0;
    const MAX_ABS_ERR: f64 = 1e-5;
    for id in genome_ids() {
        let args = ["--duration", "1", "--velocity", "1", "--seed", "5"];
        let cpu = render_to(
            &id,
            &[&args[..], &["--cpu"]].concat(),
            &temp(&format!("{id}-cpu.f32")),
        );
        let out = temp(&format!("{id}-gpu.f32"));
        run(bin()
            .env("VK_ICD_FILENAMES", &icd)
            .args(["render", "--genome", &id, "--gpu", "--out"])
            .arg(&out)
            .args(args));
        let gpu = read_f32(&out);
        let d = krs_engine::difference::Difference::of(&gpu, &cpu);
        let (snr, max) = (d.snr_db, d.max_abs_error);
        eprintln!("{id}: render --gpu vs --cpu SNR {snr:.1} dB, max abs err {max:.2e}");
        assert!(
            snr >= MIN_SNR_DB && max <= MAX_ABS_ERR,
            "{id}: SNR {snr} dB, max err {max}"
        );
    }
}

#[test]
fn render_at_another_rate_with_both_cppn_options_reproduces_the_originals_files() {
    let rates = fixtures::dir().join("../rates");
    for (suffix, args) in [
        (
            "16000_5_0.7_2",
            &[
                "--rate",
                "16000",
                "--note-delta",
                "5",
                "--velocity",
                "0.7",
                "--duration",
                "2",
            ][..],
        ),
        (
            "48000_0_1_1_aa",
            &["--anti-aliasing", "--velocity", "1", "--duration", "1"][..],
        ),
        (
            "48000_-7_1_1_fu",
            &[
                "--transpose-all-outputs",
                "--note-delta",
                "-7",
                "--velocity",
                "1",
                "--duration",
                "1",
            ][..],
        ),
    ] {
        let id = "01M88X99QVYYHHB5Y83SETHWK1";
        let wav = temp(&format!("rate-{suffix}.wav"));
        let got = render_to(id, args, &wav);
        let want = read_f32(&rates.join(format!("{id}.{suffix}.f32")));
        assert_bits_eq(&got, &want, suffix);
        let bytes = std::fs::read(&wav).unwrap();
        let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
        assert_eq!(
            rate,
            if suffix.starts_with("16000") {
                16_000
            } else {
                48_000
            }
        );
    }
}
