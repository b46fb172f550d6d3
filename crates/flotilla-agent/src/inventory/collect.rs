//! The collectors: each reads one kind of fact below the agent's root and returns items of one
//! inventory type. A collector that does not apply to the node (no rpm database, no systemd)
//! returns nothing; one that finds damage reports warnings and keeps what it could read.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_inventory::dpkg::Parsed;
use flotilla_inventory::{Application, Disk, FileItem, Hardware, InstanceInformation, NetworkInterface, Service};
use serde_json::Value;

use crate::exec;

/// Where operators drop custom inventory files, under the root.
pub const CUSTOM_DIR: &str = "etc/flotilla/inventory/custom";
/// Files larger than this are listed without a hash, so a collection stays bounded.
const MAX_HASHED_BYTES: u64 = 64 * 1024 * 1024;
/// Matches per watched pattern, so a too-wide glob cannot flood the inventory.
const MAX_MATCHES: usize = 1000;
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// One collection: items per type name, and what went wrong on the way.
#[derive(Debug, Default)]
pub struct Collected {
    pub types: BTreeMap<String, Vec<Value>>,
    pub warnings: Vec<String>,
}

impl Collected {
    fn add<T: serde::Serialize>(&mut self, kind: &str, items: impl IntoIterator<Item = T>) {
        let values: Vec<Value> = items.into_iter().filter_map(|item| serde_json::to_value(item).ok()).collect();
        self.types.entry(kind.to_owned()).or_default().extend(values);
    }
}

/// Collects every type. The tools (`rpm`, `systemctl`) run first, asynchronously; the file
/// reading and hashing runs on a blocking thread so heartbeats never wait for it.
pub async fn collect(root: &Path, files: &[String]) -> Collected {
    let rpm = rpm_query(root).await;
    let units = systemd_units(root).await;
    let root = root.to_owned();
    let files = files.to_vec();
    let blocking = tokio::task::spawn_blocking(move || {
        let mut out = Collected::default();
        instance_information(&root, &mut out);
        packages(&root, rpm, &mut out);
        services(units, &mut out);
        network(&mut out);
        hardware(&root, &mut out);
        watched_files(&root, &files, &mut out);
        custom(&root, &mut out);
        out
    });
    blocking
        .await
        .unwrap_or_else(|e| Collected { warnings: vec![format!("the collection failed: {e}")], ..Default::default() })
}

fn instance_information(root: &Path, out: &mut Collected) {
    let info = crate::node::collect(root);
    let boot_time = crate::node::read_kernel_file(root, "proc/stat").and_then(|stat| {
        stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|t| t.trim().parse::<i64>().ok())
    });
    out.add(
        "InstanceInformation",
        [InstanceInformation {
            hostname: info.hostname,
            os_name: info.os_name,
            os_version: info.os_version,
            os_id: info.os_id,
            kernel: info.kernel,
            arch: info.arch,
            agent_version: info.agent_version,
            addresses: info.addresses,
            boot_time,
        }],
    );
}

/// The rpm database directory under the root, if there is one.
fn rpm_db(root: &Path) -> Option<&'static str> {
    ["var/lib/rpm", "usr/lib/sysimage/rpm"]
        .into_iter()
        .find(|dir| ["rpmdb.sqlite", "Packages", "Packages.db"].iter().any(|file| root.join(dir).join(file).is_file()))
}

/// `Ok(None)`: no rpm database here. The database is read by the real `rpm`, with the path
/// given explicitly (distributions' rpm builds disagree on the default).
async fn rpm_query(root: &Path) -> Result<Option<String>, String> {
    let Some(db) = rpm_db(root) else { return Ok(None) };
    let root_arg = root.to_string_lossy().into_owned();
    let db_arg = format!("/{db}");
    let args =
        ["--root", &root_arg, "--dbpath", &db_arg, "-qa", "--queryformat", flotilla_inventory::rpm::QUERY_FORMAT];
    match exec::capture("rpm", &args, TOOL_TIMEOUT).await {
        Ok(Some(text)) => Ok(Some(text)),
        Ok(None) => Err(format!("an rpm database is at /{db} but the rpm tool is not installed")),
        Err(e) => Err(e),
    }
}

fn packages(root: &Path, rpm: Result<Option<String>, String>, out: &mut Collected) {
    let mut apps: Vec<Application> = Vec::new();
    let mut take = |parsed: Parsed, out: &mut Collected| {
        apps.extend(parsed.items);
        out.warnings.extend(parsed.warnings);
    };
    if let Some(text) = read(root, "var/lib/dpkg/status", out) {
        take(flotilla_inventory::dpkg::parse(&text), out);
    }
    if let Some(text) = read(root, "lib/apk/db/installed", out) {
        take(flotilla_inventory::apk::parse(&text), out);
    }
    match rpm {
        Ok(Some(text)) => take(flotilla_inventory::rpm::parse(&text), out),
        Ok(None) => {}
        Err(e) => out.warnings.push(format!("rpm: {e}")),
    }
    apps.sort();
    out.add("Application", apps);
}

/// A file under the root; None (and no warning) when absent, a warning when unreadable.
fn read(root: &Path, rel: &str, out: &mut Collected) -> Option<String> {
    match std::fs::read(root.join(rel)) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            out.warnings.push(format!("cannot read /{rel}: {e}"));
            None
        }
    }
}

/// (unit files, live units): unit files are read offline under the root; live states only
/// when this root is the running system and systemd runs it.
type Units = (Result<Option<String>, String>, Option<String>);

async fn systemd_units(root: &Path) -> Units {
    let root_arg = format!("--root={}", root.display());
    let files = exec::capture(
        "systemctl",
        &[&root_arg, "list-unit-files", "--type=service", "--no-legend", "--no-pager", "--plain"],
        TOOL_TIMEOUT,
    )
    .await;
    let live = if root == Path::new("/") && Path::new("/run/systemd/system").is_dir() {
        let args = ["list-units", "--type=service", "--all", "--no-legend", "--no-pager", "--plain"];
        exec::capture("systemctl", &args, TOOL_TIMEOUT).await.ok().flatten()
    } else {
        None
    };
    (files, live)
}

fn services((files, live): Units, out: &mut Collected) {
    let files = match files {
        Ok(Some(files)) => files,
        Ok(None) => return,
        Err(e) => {
            out.warnings.push(format!("services: {e}"));
            return;
        }
    };
    // UNIT LOAD ACTIVE SUB DESCRIPTION...
    let states: BTreeMap<&str, (&str, &str)> = live
        .as_deref()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let unit = f.next()?;
            let _load = f.next()?;
            Some((unit, (f.next()?, f.next()?)))
        })
        .collect();
    let mut items: Vec<Service> = files
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let unit = f.next()?;
            let enabled = f.next()?;
            // Templates (`getty@.service`) are not services that can run as such.
            if unit.contains("@.") {
                return None;
            }
            let (state, sub) = states.get(unit).copied().map_or(("unknown", None), |(a, s)| (a, Some(s)));
            Some(Service {
                name: unit.to_owned(),
                state: state.to_owned(),
                sub_state: sub.map(str::to_owned),
                enabled: Some(enabled.to_owned()),
            })
        })
        .collect();
    items.sort();
    out.add("Service", items);
}

/// Interfaces of the running kernel (a sandbox root shares them).
fn network(out: &mut Collected) {
    let addrs = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs,
        Err(e) => {
            out.warnings.push(format!("network: cannot list interfaces: {e}"));
            return;
        }
    };
    let mut by_name: BTreeMap<String, NetworkInterface> = BTreeMap::new();
    for ifa in addrs {
        let entry = by_name.entry(ifa.interface_name.clone()).or_insert_with(|| NetworkInterface {
            name: ifa.interface_name.clone(),
            mac: None,
            addresses: Vec::new(),
            mtu: std::fs::read_to_string(format!("/sys/class/net/{}/mtu", ifa.interface_name))
                .ok()
                .and_then(|m| m.trim().parse().ok()),
        });
        let Some(address) = ifa.address else { continue };
        if let Some(link) = address.as_link_addr() {
            if let Some(mac) = link.addr().filter(|m| m.iter().any(|b| *b != 0)) {
                entry.mac = Some(mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"));
            }
        } else if let Some(v4) = address.as_sockaddr_in() {
            entry.addresses.push(v4.ip().to_string());
        } else if let Some(v6) = address.as_sockaddr_in6() {
            entry.addresses.push(v6.ip().to_string());
        }
    }
    out.add("Network", by_name.into_values());
}

fn hardware(root: &Path, out: &mut Collected) {
    let cpuinfo = crate::node::read_kernel_file(root, "proc/cpuinfo").unwrap_or_default();
    let value = |line: &str| line.split_once(':').map(|(_, v)| v.trim().to_owned());
    let cpu_model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(value);
    let threads = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let cores_per_socket: Option<i64> =
        cpuinfo.lines().find(|l| l.starts_with("cpu cores")).and_then(value).and_then(|v| v.parse().ok());
    let sockets = cpuinfo
        .lines()
        .filter(|l| l.starts_with("physical id"))
        .filter_map(value)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1);
    let meminfo = crate::node::read_kernel_file(root, "proc/meminfo").unwrap_or_default();
    let memory_bytes = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map(|kib| kib * 1024);
    let mounts = crate::node::read_kernel_file(root, "proc/mounts").unwrap_or_default();
    let mut disks: Vec<Disk> = mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (device, mount, fs_type) = (f.next()?, f.next()?, f.next()?);
            device.starts_with("/dev/").then(|| {
                let size_bytes = nix::sys::statvfs::statvfs(mount)
                    .ok()
                    .and_then(|s| i64::try_from(u128::from(s.blocks()) * u128::from(s.fragment_size())).ok());
                Disk { device: device.to_owned(), mount: mount.to_owned(), fs_type: fs_type.to_owned(), size_bytes }
            })
        })
        .collect();
    disks.sort_by(|a, b| a.mount.cmp(&b.mount));
    let threads = i64::try_from(threads).ok().filter(|t| *t > 0);
    let cores = cores_per_socket.map(|c| c * i64::try_from(sockets).unwrap_or(1)).or(threads);
    out.add("Hardware", [Hardware { cpu_model, cpu_cores: cores, cpu_threads: threads, memory_bytes, disks }]);
}

/// `name:x:id:...` files (passwd, group) under the root, by id.
fn names(root: &Path, rel: &str) -> BTreeMap<u32, String> {
    std::fs::read_to_string(root.join(rel))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((id, name.to_owned()))
        })
        .collect()
}

/// Watched files: patterns from the server, each resolved under the root (`crate::root`), so
/// neither a pattern nor a symbolic link on the node makes the agent read outside it.
fn watched_files(root: &Path, patterns: &[String], out: &mut Collected) {
    if patterns.is_empty() {
        return;
    }
    let users = names(root, "etc/passwd");
    let groups = names(root, "etc/group");
    let mut items = BTreeMap::new();
    for pattern in patterns {
        if !pattern.starts_with('/') {
            out.warnings.push(format!("file pattern {pattern:?} is not an absolute path; ignored"));
            continue;
        }
        let is_glob = pattern.contains(['*', '?', '[']);
        if !is_glob {
            items.insert(pattern.clone(), file_item(root, Path::new(pattern), &users, &groups));
            continue;
        }
        let (paths, warnings) = match crate::root::expand(root, pattern, MAX_MATCHES) {
            Ok(found) => found,
            Err(e) => {
                out.warnings.push(format!("file pattern {pattern:?} is not a valid glob: {e}"));
                continue;
            }
        };
        out.warnings.extend(warnings.into_iter().map(|w| format!("file pattern {pattern:?}: {w}")));
        if paths.len() > MAX_MATCHES {
            out.warnings
                .push(format!("file pattern {pattern:?} matches more than {MAX_MATCHES} paths; the rest are left out"));
        }
        for path in paths.into_iter().take(MAX_MATCHES) {
            let item = file_item(root, &path, &users, &groups);
            items.insert(item.path.clone(), item);
        }
    }
    out.add("File", items.into_values());
}

/// One watched path, `shown` as the node sees it (absolute).
fn file_item(root: &Path, shown: &Path, users: &BTreeMap<u32, String>, groups: &BTreeMap<u32, String>) -> FileItem {
    let mut item = FileItem {
        path: shown.to_string_lossy().into_owned(),
        size: None,
        mode: None,
        owner: None,
        group: None,
        mtime: None,
        sha256: None,
        link_target: None,
        error: None,
    };
    // The entry itself (a link is reported as one): its parent resolved, its name not followed.
    let name = shown.file_name().map(Path::new).unwrap_or(Path::new(""));
    let entry = match crate::root::resolve(root, shown.parent().unwrap_or(Path::new("/"))) {
        Ok(parent) => parent.join(name),
        Err(e) => {
            item.error = Some(e.to_string());
            return item;
        }
    };
    let link = match std::fs::symlink_metadata(&entry) {
        Ok(meta) => meta,
        Err(e) => {
            item.error = Some(describe(&e));
            return item;
        }
    };
    let is_link = link.file_type().is_symlink();
    if is_link {
        item.link_target = std::fs::read_link(&entry).ok().map(|t| t.to_string_lossy().into_owned());
    }
    let path = match crate::root::resolve(root, shown) {
        Ok(path) => path,
        Err(e) => {
            item.error = Some(e.to_string());
            return item;
        }
    };
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) => {
            item.error = Some(if is_link { format!("dangling symbolic link: {}", describe(&e)) } else { describe(&e) });
            return item;
        }
    };
    item.size = i64::try_from(meta.len()).ok();
    item.mode = Some(format!("{:04o}", meta.permissions().mode() & 0o7777));
    item.owner = Some(users.get(&meta.uid()).cloned().unwrap_or_else(|| meta.uid().to_string()));
    item.group = Some(groups.get(&meta.gid()).cloned().unwrap_or_else(|| meta.gid().to_string()));
    item.mtime = Some(meta.mtime());
    if !meta.is_file() {
        item.error = Some("not a regular file; not hashed".into());
    } else if meta.len() > MAX_HASHED_BYTES {
        item.error = Some(format!("larger than {MAX_HASHED_BYTES} bytes; not hashed"));
    } else {
        match sha256_file(&path) {
            Ok(hash) => item.sha256 = Some(hash),
            Err(e) => item.error = Some(describe(&e)),
        }
    }
    item
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    // Resolved already: a link swapped in since is refused, not followed out of the root.
    let mut file = crate::root::open_no_follow(path)?;
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(hex(context.finish().as_ref()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn custom(root: &Path, out: &mut Collected) {
    let dir: PathBuf = root.join(CUSTOM_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in files {
        let shown = format!("/{CUSTOM_DIR}/{}", file.file_name().map(|f| f.to_string_lossy()).unwrap_or_default());
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        if size > flotilla_inventory::custom::MAX_FILE_BYTES {
            out.warnings
                .push(format!("custom inventory {shown}: {}", flotilla_inventory::custom::CustomError::TooLarge(size)));
            continue;
        }
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) => {
                out.warnings.push(format!("custom inventory {shown}: {}", describe(&e)));
                continue;
            }
        };
        match flotilla_inventory::custom::parse(&bytes) {
            Ok((kind, items)) => out.types.entry(kind.as_str().to_owned()).or_default().extend(items),
            Err(e) => out.warnings.push(format!("custom inventory {shown} {e}; skipped")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn files_report_links_and_errors_per_path() {
        let root = tempfile::tempdir().expect("tempdir");
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::write(etc.join("a.conf"), "hello").expect("write");
        std::os::unix::fs::symlink("/nowhere", etc.join("dangling.conf")).expect("symlink");
        std::os::unix::fs::symlink("a.conf", etc.join("link.conf")).expect("symlink");
        nix::unistd::mkfifo(&etc.join("pipe.conf"), nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        let patterns =
            vec!["/etc/*.conf".to_owned(), "/etc/missing".to_owned(), "relative".to_owned(), "/[".to_owned()];
        let collected = collect(root.path(), &patterns).await;
        let files: Vec<FileItem> =
            collected.types["File"].iter().map(|v| serde_json::from_value(v.clone()).expect("item")).collect();
        let by_path = |p: &str| files.iter().find(|f| f.path == p).unwrap_or_else(|| panic!("{p} in {files:?}"));
        assert_eq!(
            by_path("/etc/a.conf").sha256.as_deref(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
        assert_eq!(by_path("/etc/a.conf").size, Some(5));
        assert!(by_path("/etc/dangling.conf").error.as_deref().is_some_and(|e| e.contains("dangling")));
        assert_eq!(by_path("/etc/dangling.conf").link_target.as_deref(), Some("/nowhere"));
        assert!(by_path("/etc/link.conf").sha256.is_some());
        assert!(by_path("/etc/pipe.conf").error.as_deref().is_some_and(|e| e.contains("not a regular file")));
        assert_eq!(by_path("/etc/missing").error.as_deref(), Some("does not exist"));
        assert!(collected.warnings.iter().any(|w| w.contains("not an absolute path")), "{:?}", collected.warnings);
        assert!(collected.warnings.iter().any(|w| w.contains("not a valid glob")), "{:?}", collected.warnings);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn watched_files_never_read_outside_the_root() {
        let host = tempfile::tempdir().expect("tempdir");
        std::fs::write(host.path().join("shadow"), "host secret").expect("write");
        let root = tempfile::tempdir().expect("tempdir");
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::os::unix::fs::symlink(host.path().join("shadow"), etc.join("abs.conf")).expect("absolute link");
        std::os::unix::fs::symlink(host.path(), etc.join("hostdir")).expect("link to a host directory");
        let up = format!("../..{}", host.path().join("shadow").display());
        std::os::unix::fs::symlink(&up, etc.join("up.conf")).expect("relative link above the root");
        let escape = format!("/../..{}", host.path().join("shadow").display());
        let patterns = vec![
            "/etc/*.conf".to_owned(),
            "/etc/hostdir/*".to_owned(),
            "/etc/hostdir/shadow".to_owned(),
            escape.clone(),
        ];
        let collected = collect(root.path(), &patterns).await;
        let files: Vec<FileItem> =
            collected.types["File"].iter().map(|v| serde_json::from_value(v.clone()).expect("item")).collect();
        assert!(files.iter().all(|f| f.sha256.is_none() && f.size.is_none()), "nothing outside was read: {files:?}");
        let by_path = |p: &str| files.iter().find(|f| f.path == p).unwrap_or_else(|| panic!("{p} in {files:?}"));
        assert!(by_path("/etc/abs.conf").error.as_deref().is_some_and(|e| e.contains("dangling")), "{files:?}");
        assert!(by_path("/etc/up.conf").error.as_deref().is_some_and(|e| e.contains("outside the agent's root")));
        assert!(by_path(&escape).error.as_deref().is_some_and(|e| e.contains("outside the agent's root")));
        assert_eq!(by_path("/etc/hostdir/shadow").error.as_deref(), Some("does not exist"));
        assert!(
            !files.iter().any(|f| f.path.starts_with("/etc/hostdir/") && f.path != "/etc/hostdir/shadow"),
            "the host directory was not listed"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn missing_or_corrupt_rpm_databases_never_fail_the_collection() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("var/lib/rpm")).expect("mkdir");
        // A directory without a database: rpm does not apply here.
        let collected = collect(root.path(), &[]).await;
        assert!(!collected.warnings.iter().any(|w| w.starts_with("rpm")), "{:?}", collected.warnings);
        // A damaged database: a warning from rpm, the other collectors still report.
        std::fs::write(root.path().join("var/lib/rpm/rpmdb.sqlite"), b"this is not sqlite").expect("write");
        std::fs::create_dir_all(root.path().join("lib/apk/db")).expect("mkdir");
        std::fs::write(root.path().join("lib/apk/db/installed"), "P:musl\nV:1.2.4-r4\n\n").expect("write");
        let collected = collect(root.path(), &[]).await;
        assert!(collected.warnings.iter().any(|w| w.starts_with("rpm")), "{:?}", collected.warnings);
        assert_eq!(collected.types["Application"].len(), 1);
        assert!(collected.types.contains_key("InstanceInformation"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn custom_files_are_validated_one_by_one() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join(CUSTOM_DIR);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("rack.json"),
            r#"{"SchemaVersion":"1.0","TypeName":"Custom:Rack","Content":{"Row":"3"}}"#,
        )
        .expect("write");
        std::fs::write(dir.join("broken.json"), "{ not json").expect("write");
        std::fs::write(dir.join("clash.json"), r#"{"SchemaVersion":"1.0","TypeName":"Application","Content":{}}"#)
            .expect("write");
        let big = vec![b' '; usize::try_from(flotilla_inventory::custom::MAX_FILE_BYTES).expect("size") + 1];
        std::fs::write(dir.join("big.json"), big).expect("write");
        let collected = collect(root.path(), &[]).await;
        assert_eq!(collected.types["Custom:Rack"], vec![serde_json::json!({"Row": "3"})]);
        let warnings = collected.warnings.join("\n");
        assert!(warnings.contains("broken.json is not valid JSON"), "{warnings}");
        assert!(warnings.contains("clash.json declares the built-in type"), "{warnings}");
        assert!(warnings.contains("big.json: is"), "{warnings}");
        // The missing package databases are not errors.
        assert!(!warnings.contains("dpkg") && !warnings.contains("rpm"), "{warnings}");
        assert_eq!(collected.types["Application"], Vec::<Value>::new());
    }
}
