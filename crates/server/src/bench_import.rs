//! `carebridge bench --scenario import`: the reading half of the directory import — a CSV of
//! `--people` rows (given and family name, e-mail, two phone numbers, street, postal code,
//! locality, unit, skills) written in memory as Excel writes it in Switzerland (Windows-1252,
//! `;`), then decoded, mapped and checked (E.164 phones, e-mail syntax) by
//! `directory::import::read`. The writing half (apply) is not built yet.

use std::time::Instant;

use carebridge_directory::import;

use crate::bench::BenchArgs;

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
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
    for _ in 0..3 {
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
    Ok(())
}
