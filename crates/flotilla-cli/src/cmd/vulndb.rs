//! `flotilla vulndb import | status | match`: the advisory database.
//!
//! Import reads OSV JSON files, directories (recursively; `.json` files only) and `.zip`
//! exports (OSV.dev's per-ecosystem `all.zip`), and streams the records to the server in
//! batches, so a large export never becomes one huge request or sits in memory whole.
//! Archives are untrusted: an entry whose path escapes (`../x`, `/etc/x`) or whose
//! uncompressed size exceeds [`MAX_ENTRY_BYTES`] is rejected alone (sizes are counted while
//! reading, never taken from the header), and an archive holding more than
//! [`MAX_ARCHIVE_BYTES`] uncompressed stops the import with an error.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use flotilla_api::{Client, VulnImport, VulnImportResult, VulnMatch, VulnRecordText, VulnRejected};

use crate::output::{Format, print, printable, table};
use crate::output::{out, outln};

/// Largest OSV record accepted from an archive entry or a file (the biggest real ones are
/// a few MiB: Ubuntu kernel records).
pub const MAX_ENTRY_BYTES: u64 = 32 * 1024 * 1024;
/// Largest total uncompressed size read from one archive (OSV's biggest exports are a few GiB).
pub const MAX_ARCHIVE_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// A batch is sent when it holds this much text or this many records.
const BATCH_BYTES: usize = 4 * 1024 * 1024;
const BATCH_RECORDS: usize = 1_000;

#[derive(clap::Subcommand)]
pub enum VulnDb {
    /// Import OSV advisories: JSON files, directories (recursively) and .zip exports.
    ///
    /// Example: flotilla vulndb import Debian-all.zip ./osv/ubuntu ALSA-2023:5453.json
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Advisories per ecosystem and the newest record.
    ///
    /// Example: flotilla vulndb status
    Status,
    /// Advisories affecting one package version (the name as the advisories use it).
    ///
    /// Example: flotilla vulndb match --ecosystem Debian:12 --package openssl --version 3.0.11-1~deb12u1
    Match {
        /// OSV ecosystem, e.g. Debian:12, Ubuntu:22.04:LTS, Alpine:v3.19, AlmaLinux:9.
        #[arg(long)]
        ecosystem: String,
        /// Package name (Debian/Ubuntu: the source package; Alpine: the origin).
        #[arg(long)]
        package: String,
        /// Exact installed version.
        #[arg(long)]
        version: String,
    },
}

impl VulnDb {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            VulnDb::Import { paths } => {
                let result = import(client, &paths).await?;
                match format {
                    Format::Table => {
                        outln!(
                            "new {}  updated {}  unchanged {}  rejected {}",
                            result.new,
                            result.updated,
                            result.unchanged,
                            result.rejected.len()
                        )?;
                        for r in &result.rejected {
                            let id = r.id.as_deref().map(|id| format!(" ({id})")).unwrap_or_default();
                            outln!("rejected {}{id}: {}", printable(&r.source), printable(&r.reason))?;
                        }
                        Ok(())
                    }
                    _ => print(format, &result, &[], vec![]),
                }
            }
            VulnDb::Status => {
                let status = client.vulndb_status().await?;
                match format {
                    Format::Table => {
                        let rows: Vec<Vec<String>> = status
                            .ecosystems
                            .iter()
                            .map(|e| {
                                vec![
                                    e.ecosystem.clone(),
                                    e.advisories.to_string(),
                                    e.newest_modified.clone().unwrap_or_default(),
                                ]
                            })
                            .collect();
                        out!("{}", table(&["ECOSYSTEM", "ADVISORIES", "NEWEST_MODIFIED"], &rows))?;
                        let newest = status
                            .newest
                            .map(|n| format!("{} (modified {})", n.id, n.modified))
                            .unwrap_or_else(|| "none".into());
                        outln!("total {} advisories; newest {newest}", status.advisories)?;
                        Ok(())
                    }
                    _ => print(format, &status, &[], vec![]),
                }
            }
            VulnDb::Match { ecosystem, package, version } => {
                let rows = client.vulndb_match(&ecosystem, &package, &version).await?;
                print(format, &rows, &["ADVISORY", "ALIASES", "PACKAGE", "FIXED", "SEVERITY"], match_rows(&rows))
            }
        }
    }
}

fn match_rows(rows: &[VulnMatch]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|m| {
            vec![
                m.advisory_id.clone(),
                m.aliases.join(","),
                m.package.clone(),
                m.fixed_version.clone().unwrap_or_else(|| "(unfixed)".into()),
                m.severity.clone(),
            ]
        })
        .collect()
}

/// Collects records into batches and sends each full one.
struct Batcher<'a> {
    client: &'a Client,
    batch: Vec<VulnRecordText>,
    bytes: usize,
    result: VulnImportResult,
}

impl Batcher<'_> {
    async fn push(&mut self, source: String, text: String) -> anyhow::Result<()> {
        self.bytes += text.len();
        self.batch.push(VulnRecordText { source, text });
        if self.bytes >= BATCH_BYTES || self.batch.len() >= BATCH_RECORDS {
            self.flush().await?;
        }
        Ok(())
    }

    fn reject(&mut self, source: String, reason: String) {
        self.result.rejected.push(VulnRejected { source, id: None, reason });
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.batch);
        self.bytes = 0;
        let count = records.len();
        let reply = self
            .client
            .vulndb_import(&VulnImport { records })
            .await
            .with_context(|| format!("cannot import a batch of {count} records"))?;
        self.result.absorb(reply);
        Ok(())
    }
}

async fn import(client: &Client, paths: &[PathBuf]) -> anyhow::Result<VulnImportResult> {
    for p in paths {
        if !p.exists() {
            bail!("{} does not exist: give OSV JSON files, directories or .zip exports", p.display());
        }
    }
    let mut b = Batcher { client, batch: Vec::new(), bytes: 0, result: VulnImportResult::default() };
    for p in paths {
        if p.is_dir() {
            let mut files = Vec::new();
            walk(p, &mut files).with_context(|| format!("cannot read directory {}", p.display()))?;
            for f in files {
                import_file(&mut b, &f).await?;
            }
        } else {
            import_file(&mut b, p).await?;
        }
    }
    b.flush().await?;
    Ok(b.result)
}

/// Every `.json` and `.zip` file under `dir`, sorted (symlinks are not followed).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let kind = e.file_type()?;
        let path = e.path();
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() && has_extension(&path, &["json", "zip"]) {
            out.push(path);
        }
    }
    Ok(())
}

fn has_extension(p: &Path, exts: &[&str]) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

async fn import_file(b: &mut Batcher<'_>, path: &Path) -> anyhow::Result<()> {
    let source = path.display().to_string();
    if has_extension(path, &["zip"]) {
        return import_zip(b, path).await;
    }
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {source}"))?;
    match read_capped(file, MAX_ENTRY_BYTES) {
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => b.push(source, text).await?,
            Err(_) => b.reject(source, "malformed JSON: not UTF-8 text".into()),
        },
        Ok(None) => b.reject(source, format!("larger than {} MiB: not an OSV record", MAX_ENTRY_BYTES >> 20)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {source}")),
    }
    Ok(())
}

/// Reads at most `cap` bytes; `None` when there is more.
fn read_capped(reader: impl Read, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    reader.take(cap + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= cap).then_some(buf))
}

async fn import_zip(b: &mut Batcher<'_>, path: &Path) -> anyhow::Result<()> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
    let mut archive = zip::ZipArchive::new(file).with_context(|| format!("{name} is not a readable zip archive"))?;
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).with_context(|| format!("cannot read entry {i} of {name}"))?;
        let entry_name = match entry.name() {
            Ok(n) => n.into_owned(),
            Err(e) => {
                b.reject(format!("{name}:#{i}"), format!("unreadable entry name: {e}"));
                continue;
            }
        };
        let source = format!("{name}:{entry_name}");
        if entry.is_dir() {
            continue;
        }
        // `enclosed_name` refuses absolute paths and any `..` that leaves the archive root.
        if entry.enclosed_name().is_none() || entry_name.split(['/', '\\']).any(|c| c == "..") {
            b.reject(source, "unsafe path in archive (path traversal): entry skipped".into());
            continue;
        }
        if !has_extension(Path::new(&entry_name), &["json"]) {
            continue;
        }
        let read = read_capped(&mut entry, MAX_ENTRY_BYTES).with_context(|| format!("cannot read {source}"))?;
        let Some(bytes) = read else {
            total = total.saturating_add(MAX_ENTRY_BYTES);
            b.reject(
                source,
                format!("entry is larger than {} MiB uncompressed (zip bomb?): skipped", MAX_ENTRY_BYTES >> 20),
            );
            check_total(total, &name)?;
            continue;
        };
        total = total.saturating_add(bytes.len() as u64);
        check_total(total, &name)?;
        drop(entry);
        match String::from_utf8(bytes) {
            Ok(text) => b.push(source, text).await?,
            Err(_) => b.reject(source, "malformed JSON: not UTF-8 text".into()),
        }
    }
    Ok(())
}

fn check_total(total: u64, name: &str) -> anyhow::Result<()> {
    if total > MAX_ARCHIVE_BYTES {
        bail!(
            "{name} holds more than {} GiB uncompressed (zip bomb?): import stopped; records already sent are kept",
            MAX_ARCHIVE_BYTES >> 30
        );
    }
    Ok(())
}
