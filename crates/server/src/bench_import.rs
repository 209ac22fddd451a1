//! `carebridge bench --scenario import`: the directory import end to end. A CSV of `--people`
//! rows (employee number, given and family name, e-mail, two phone numbers, street, postal
//! code, locality, unit, skills) as Excel writes it in Switzerland (Windows-1252, `;`) is
//! written to a file; then
//! - the reader alone (decode, map, check: E.164 phones, e-mail syntax) is timed, and phone
//!   parsing on its own;
//! - the whole import is timed from reading the file to the committed transaction, into a new
//!   organisation each run (units created on the way);
//! - the same file is imported again (everything unchanged: nothing may be written);
//! - the peak resident memory of the process is reported.

use std::time::Instant;

use carebridge_directory::import;

use crate::bench::BenchArgs;

pub async fn run(args: &BenchArgs, config: &crate::config::Config) -> anyhow::Result<()> {
    let n = args.people;
    let mut text = String::from(
        "Personalnummer;Vorname;Nachname;E-Mail;Handy;Telefon;Strasse;PLZ;Ort;Einheit;Fähigkeiten\r\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "P{i};Jürg;Müller{i};jm{i}@example.ch;079 {:03} {:02} {:02};044 {:03} {:02} {:02};Bahnhofstrasse {};80{:02};Zürich;Region Nord/Team {};Fahrer, Sanitäter\r\n",
            i % 1000, i % 100, (i / 100) % 100, (i + 7) % 1000, i % 97, i % 89, i % 200, i % 100, i % 12
        ));
    }
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
    println!(
        "{n} rows, {:.1} MiB (Windows-1252, `;`)",
        bytes.len() as f64 / 1048576.0
    );
    for _ in 0..2 {
        let start = Instant::now();
        let (_, rows, errors) = import::read(&bytes, &[], "CH");
        let secs = start.elapsed().as_secs_f64();
        anyhow::ensure!(errors.is_empty() && rows.len() == n, "{errors:?}");
        println!(
            "decode, map and check {n} rows (2 phones each): {:.0} ms, {:.0} rows/s",
            secs * 1000.0,
            n as f64 / secs
        );
    }
    let phones: Vec<String> = (0..n)
        .map(|i| format!("079 {:03} {:02} {:02}", i % 1000, i % 100, (i / 100) % 100))
        .collect();
    let start = Instant::now();
    let mut v = carebridge_domain::Violations::new();
    for p in &phones {
        let _ = carebridge_domain::person::normalise_phone(&mut v, "/p", p, "CH");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "of which phone parsing alone: {:.0} ms for {n} numbers ({:.1} µs each)",
        secs * 1000.0,
        secs * 1e6 / n as f64
    );
    end_to_end(&bytes, n, config).await
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// The resident memory now: after an import, whether the page cache it grew was given back.
fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// A `/proc/self/status` figure (in KiB there) in MiB; 0 where there is no such file.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0)
        / 1024.0
}

async fn end_to_end(bytes: &[u8], n: usize, config: &crate::config::Config) -> anyhow::Result<()> {
    use carebridge_domain::{Clock, SystemClock};
    use carebridge_proto::directory::ImportOptions;
    let dir = tempfile_dir()?;
    let path = dir.join("people.csv");
    std::fs::write(&path, bytes)?;
    let db = crate::open_db(config, None).await?;
    println!("before the imports: peak RSS {:.0} MiB", peak_rss_mib());
    for round in 0..2 {
        let slug = format!("import-{}", uuid::Uuid::new_v4().simple());
        crate::bench::ensure_org(&db, &slug, "Import bench", SystemClock.now()).await?;
        let options = ImportOptions {
            create_units: true,
            ..Default::default()
        };
        let start = Instant::now();
        let file = std::fs::read(&path)?;
        let r = crate::commands::import_people(
            &db,
            &slug,
            file,
            options.clone(),
            false,
            SystemClock.now(),
        )
        .await?;
        let secs = start.elapsed().as_secs_f64();
        anyhow::ensure!(r.applied && r.created == n as u64, "{r:?}");
        println!(
            "run {round}: imported {n} new people (file to commit, {} units created): {:.0} ms, {:.0} rows/s; peak RSS {:.0} MiB, RSS after {:.0} MiB",
            r.units_created.len(),
            secs * 1000.0,
            n as f64 / secs,
            peak_rss_mib(),
            rss_mib()
        );
        let start = Instant::now();
        let file = std::fs::read(&path)?;
        let r = crate::commands::import_people(&db, &slug, file, options, false, SystemClock.now())
            .await?;
        let secs = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            r.applied && r.unchanged == n as u64 && r.created + r.updated == 0,
            "{r:?}"
        );
        println!(
            "run {round}: the same file again ({n} unchanged, nothing written): {:.0} ms, {:.0} rows/s; RSS after {:.0} MiB",
            secs * 1000.0,
            n as f64 / secs,
            rss_mib()
        );
    }
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("carebridge-bench-import-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
