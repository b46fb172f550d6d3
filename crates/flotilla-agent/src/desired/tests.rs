//! Each desired-state action on a throwaway root, with the real tools (systemctl, useradd,
//! dpkg, apt-get): first run changes, a second identical run changes nothing.

// Tests build their fixtures (a .deb, a local apt repository) with the real tools.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use super::apply;
use flotilla_testkit::packages::{Deb, build_deb, dpkg_root, have, is_root};

fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

async fn run(root: &Path, action: &str, pairs: &[(&str, &str)]) -> Result<(bool, String), String> {
    apply(root, action, &inputs(pairs), Duration::from_secs(300)).await.map(|r| (r.changed, r.detail))
}

fn root_with_accounts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/bash\nweb:x:1234:1234::/srv/web:/bin/sh\n")
        .expect("passwd");
    std::fs::write(etc.join("group"), "root:x:0:\nweb:x:1234:\nwheel:x:10:\n").expect("group");
    std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\nweb:*:19000:0:99999:7:::\n").expect("shadow");
    std::fs::write(etc.join("gshadow"), "root:*::\nweb:*::\nwheel:*::\n").expect("gshadow");
    dir
}

#[tokio::test]
async fn file_write_creates_keeps_and_fixes_only_what_differs() {
    let dir = root_with_accounts();
    let root = dir.path();
    let motd = root.join("etc/motd");
    let write = [("path", "/etc/motd"), ("content", "hi\n"), ("mode", "0644")];
    assert_eq!(run(root, "file:write", &write).await, Ok((true, "/etc/motd: created".into())));
    assert_eq!(std::fs::read_to_string(&motd).expect("written"), "hi\n");
    assert_eq!(std::fs::metadata(&motd).expect("meta").mode() & 0o7777, 0o644);
    assert_eq!(run(root, "file:write", &write).await, Ok((false, "/etc/motd: unchanged".into())));

    std::fs::set_permissions(&motd, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let inode = std::fs::metadata(&motd).expect("meta").ino();
    assert_eq!(
        run(root, "file:write", &write).await,
        Ok((true, "/etc/motd: mode 0600 → 0644 (content unchanged)".into()))
    );
    assert_eq!(std::fs::metadata(&motd).expect("meta").ino(), inode, "mode fixed in place, not rewritten");
    assert_eq!(std::fs::metadata(&motd).expect("meta").mode() & 0o7777, 0o644);

    std::fs::write(&motd, "edited by hand\n").expect("edit");
    assert_eq!(run(root, "file:write", &write).await, Ok((true, "/etc/motd: content differed, rewritten".into())));
    assert_eq!(std::fs::read_to_string(&motd).expect("restored"), "hi\n");
    assert_ne!(std::fs::metadata(&motd).expect("meta").ino(), inode, "replaced by rename");
    let leftovers: Vec<_> = std::fs::read_dir(root.join("etc"))
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("flotilla-"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file left: {leftovers:?}");

    // The owner is the NODE's `web` (1234 in its /etc/passwd), whatever this machine calls 1234.
    let owned = [("path", "/etc/motd"), ("content", "hi\n"), ("owner", "web"), ("group", "web")];
    if is_root() {
        assert_eq!(
            run(root, "file:write", &owned).await,
            Ok((true, "/etc/motd: owner 0 → 1234, group 0 → 1234 (content unchanged)".into()))
        );
        let meta = std::fs::metadata(&motd).expect("meta");
        assert_eq!((meta.uid(), meta.gid()), (1234, 1234));
        assert_eq!(run(root, "file:write", &owned).await, Ok((false, "/etc/motd: unchanged".into())));
    }

    let ghost = [("path", "/etc/issue"), ("content", "x"), ("owner", "ghost")];
    let error = run(root, "file:write", &ghost).await.expect_err("unknown owner");
    assert!(error.contains("owner `ghost` does not exist on the node"), "{error}");
    assert!(!root.join("etc/issue").exists(), "nothing written for an unknown owner");
    let error = run(root, "file:write", &[("path", "/etc/x"), ("content", ""), ("group", "nogroup")])
        .await
        .expect_err("unknown group");
    assert!(error.contains("group `nogroup` does not exist on the node"), "{error}");

    let error = run(root, "file:write", &[("path", "/missing/dir/f"), ("content", "")]).await.expect_err("no dir");
    assert!(error.contains("the directory /missing/dir does not exist on the node"), "{error}");
    let error = run(root, "file:write", &[("path", "/etc"), ("content", "")]).await.expect_err("dir");
    assert!(error.contains("/etc is a directory"), "{error}");
    let error = run(root, "file:write", &[("path", "etc/motd"), ("content", "")]).await.expect_err("relative");
    assert!(error.contains("is not an absolute path"), "{error}");
    let error =
        run(root, "file:write", &[("path", "/etc/motd"), ("content", ""), ("mode", "999")]).await.expect_err("");
    assert!(error.contains("not an octal mode"), "{error}");

    // A link pointing out of the root is followed inside it, never outside.
    let outside = tempfile::tempdir().expect("outside");
    std::os::unix::fs::symlink(outside.path(), root.join("etc/out")).expect("link");
    let _ = run(root, "file:write", &[("path", "/etc/out/f"), ("content", "x")]).await;
    assert!(!outside.path().join("f").exists(), "wrote outside the root");
}

#[tokio::test]
async fn file_absent_removes_files_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc/cron.d")).expect("dirs");
    std::fs::write(root.join("etc/cron.d/old"), "x").expect("file");
    let absent = [("path", "/etc/cron.d/old")];
    assert_eq!(run(root, "file:absent", &absent).await, Ok((true, "/etc/cron.d/old: removed".into())));
    assert!(!root.join("etc/cron.d/old").exists());
    assert_eq!(run(root, "file:absent", &absent).await, Ok((false, "/etc/cron.d/old: unchanged".into())));
    let error = run(root, "file:absent", &[("path", "/etc/cron.d")]).await.expect_err("directory");
    assert!(error.contains("removes files only"), "{error}");
    assert!(root.join("etc/cron.d").is_dir());
}

#[tokio::test]
async fn sysctl_is_persisted_once_and_not_set_live_under_another_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    let conf = root.join("etc/sysctl.d/99-flotilla.conf");
    let forward = [("name", "net.ipv4.ip_forward"), ("value", "1")];
    let (changed, detail) = run(root, "sysctl:ensure", &forward).await.expect("first");
    assert!(changed);
    assert_eq!(
        detail,
        "sysctl net.ipv4.ip_forward: net.ipv4.ip_forward = 1 written to /etc/sysctl.d/99-flotilla.conf; live value \
         not set (the agent's root is not /)"
    );
    assert!(std::fs::read_to_string(&conf).expect("conf").contains("\nnet.ipv4.ip_forward = 1\n"));
    assert_eq!(run(root, "sysctl:ensure", &forward).await, Ok((false, "sysctl net.ipv4.ip_forward: unchanged".into())));
    let (changed, _) = run(root, "sysctl:ensure", &[("name", "net.ipv4.ip_forward"), ("value", "0")]).await.expect("");
    assert!(changed);
    let text = std::fs::read_to_string(&conf).expect("conf");
    assert_eq!(text.matches("net.ipv4.ip_forward").count(), 1, "{text}");
    assert!(text.contains("net.ipv4.ip_forward = 0"), "{text}");
}

#[tokio::test]
async fn user_ensure_reads_the_nodes_passwd_first() {
    if !have("useradd") {
        flotilla_testkit::skip("useradd is not installed on this machine");
        return;
    }
    let dir = root_with_accounts();
    let root = dir.path();
    let alice =
        [("name", "alice"), ("uid", "1500"), ("groups", "wheel"), ("shell", "/bin/sh"), ("home", "/home/alice")];
    assert_eq!(run(root, "user:ensure", &alice).await, Ok((true, "user alice: created".into())));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("alice:x:1500:"), "{passwd}");
    assert!(std::fs::read_to_string(root.join("etc/group")).expect("group").contains("wheel:x:10:alice"));
    assert_eq!(run(root, "user:ensure", &alice).await, Ok((false, "user alice: unchanged".into())));
    let bash = [("name", "alice"), ("shell", "/bin/bash")];
    assert_eq!(run(root, "user:ensure", &bash).await, Ok((true, "user alice: shell /bin/sh → /bin/bash".into())));
    assert_eq!(run(root, "user:ensure", &[("name", "web")]).await, Ok((false, "user web: unchanged".into())));
    let gone = [("name", "alice"), ("state", "absent")];
    assert_eq!(run(root, "user:ensure", &gone).await, Ok((true, "user alice: removed".into())));
    assert!(!std::fs::read_to_string(root.join("etc/passwd")).expect("passwd").contains("alice"));
    assert_eq!(run(root, "user:ensure", &gone).await, Ok((false, "user alice: unchanged".into())));
    let error = run(root, "user:ensure", &[("name", "bob"), ("groups", "nosuchgroup")]).await.expect_err("group");
    assert!(error.contains("useradd failed") && error.contains("nosuchgroup"), "{error}");
}

#[tokio::test]
async fn service_enablement_goes_through_systemctl_root() {
    if !have("systemctl") {
        flotilla_testkit::skip("systemctl is not installed on this machine");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(&units).expect("units");
    std::fs::write(
        units.join("demo.service"),
        "[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    )
    .expect("unit");
    let wants = units.join("multi-user.target.wants/demo.service");
    let enable = [("name", "demo"), ("enabled", "true")];
    assert_eq!(run(root, "service:ensure", &enable).await, Ok((true, "service demo.service: enabled".into())));
    assert!(std::fs::symlink_metadata(&wants).is_ok(), "systemctl --root made the link");
    assert_eq!(run(root, "service:ensure", &enable).await, Ok((false, "service demo.service: unchanged".into())));
    let disable = [("name", "demo.service"), ("enabled", "false")];
    assert_eq!(run(root, "service:ensure", &disable).await, Ok((true, "service demo.service: disabled".into())));
    assert!(std::fs::symlink_metadata(&wants).is_err());
    assert_eq!(run(root, "service:ensure", &disable).await, Ok((false, "service demo.service: unchanged".into())));

    let error = run(root, "service:ensure", &[("name", "nope"), ("enabled", "true")]).await.expect_err("missing");
    assert!(error.contains("the unit nope.service does not exist on the node"), "{error}");
    let error = run(root, "service:ensure", &[("name", "demo"), ("state", "running")]).await.expect_err("live only");
    assert!(error.contains("`state` (running/stopped) needs the agent's --root to be /"), "{error}");
}

#[tokio::test]
async fn package_ensure_uses_the_nodes_dpkg_and_apt() {
    if !(have("dpkg") && have("dpkg-deb") && have("apt-get") && is_root()) {
        flotilla_testkit::skip("dpkg, dpkg-deb and apt-get (as root) are needed and missing here");
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    dpkg_root(root);
    let deb = build_deb(work.path(), &Deb::new("flotilla-tiny", "1.0-1"));
    let out = std::process::Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "-i"])
        .arg(&deb)
        .output()
        .expect("dpkg runs");
    assert!(out.status.success(), "dpkg -i: {}", String::from_utf8_lossy(&out.stderr));

    let present = [("name", "flotilla-tiny")];
    assert_eq!(run(root, "package:ensure", &present).await, Ok((false, "package flotilla-tiny: unchanged".into())));
    let pinned = [("name", "flotilla-tiny"), ("version", "1.0-1")];
    assert_eq!(run(root, "package:ensure", &pinned).await, Ok((false, "package flotilla-tiny: unchanged".into())));

    let missing = [("name", "flotilla-no-such-package")];
    let error = run(root, "package:ensure", &missing).await.expect_err("not in the repository");
    assert!(
        error.contains("apt-get failed") && error.contains("Unable to locate package flotilla-no-such-package"),
        "{error}"
    );

    let absent = [("name", "flotilla-tiny"), ("state", "absent")];
    assert_eq!(
        run(root, "package:ensure", &absent).await,
        Ok((true, "package flotilla-tiny: removed (was 1.0-1)".into()))
    );
    assert!(!root.join("usr/share/doc/flotilla-tiny/README").exists());
    assert_eq!(run(root, "package:ensure", &absent).await, Ok((false, "package flotilla-tiny: unchanged".into())));

    // Present again, this time from the node's own repository (a local one in its sources).
    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    std::fs::copy(&deb, repo.join("flotilla-tiny_1.0-1_all.deb")).expect("copy");
    let scanned = std::process::Command::new("dpkg-scanpackages").args([".", "/dev/null"]).current_dir(&repo).output();
    let Some(scanned) = scanned.ok().filter(|o| o.status.success()) else {
        flotilla_testkit::skip("install from a repository: dpkg-scanpackages is not installed");
        return;
    };
    std::fs::write(repo.join("Packages"), &scanned.stdout).expect("Packages");
    std::fs::write(
        root.join("etc/apt/sources.list.d/local.list"),
        format!("deb [trusted=yes] file:{} ./\n", repo.display()),
    )
    .expect("sources");
    let update = std::process::Command::new("apt-get")
        .arg("-o")
        .arg(format!("Dir={}", root.display()))
        .arg("-o")
        .arg(format!("Dir::State::status={}", root.join("var/lib/dpkg/status").display()))
        .arg("update")
        .output()
        .expect("apt-get runs");
    assert!(update.status.success(), "apt-get update: {}", String::from_utf8_lossy(&update.stderr));
    assert_eq!(
        run(root, "package:ensure", &present).await,
        Ok((true, "package flotilla-tiny: installed 1.0-1".into()))
    );
    assert!(root.join("usr/share/doc/flotilla-tiny/README").exists(), "unpacked under the root");
    assert_eq!(run(root, "package:ensure", &present).await, Ok((false, "package flotilla-tiny: unchanged".into())));
}
