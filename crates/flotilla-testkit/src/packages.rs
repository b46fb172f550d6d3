//! Test fixtures built with the real tools: .deb and .rpm packages, apt and dnf repositories,
//! throwaway package-manager roots, a lock held by another process.

// Fixtures run the real packaging tools directly.
#![allow(clippy::disallowed_methods)]

use std::io::BufRead as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

pub fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

/// Runs a fixture command that must succeed.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A .deb to build.
#[derive(Debug, Clone, Default)]
pub struct Deb {
    pub name: &'static str,
    pub version: &'static str,
    pub section: Option<&'static str>,
    pub priority: Option<&'static str>,
    pub depends: Option<&'static str>,
    /// The body of a `postinst` (run by /bin/sh).
    pub postinst: Option<&'static str>,
}

impl Deb {
    pub fn new(name: &'static str, version: &'static str) -> Deb {
        Deb { name, version, ..Deb::default() }
    }
}

/// Builds `NAME_VERSION_all.deb` (one file under /usr/share/doc) in `dir`.
pub fn build_deb(dir: &Path, deb: &Deb) -> PathBuf {
    let (name, version) = (deb.name, deb.version);
    let tree = dir.join(format!("tree-{name}-{version}"));
    std::fs::create_dir_all(tree.join("DEBIAN")).expect("tree");
    std::fs::create_dir_all(tree.join(format!("usr/share/doc/{name}"))).expect("tree");
    let mut control =
        format!("Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Flotilla tests <t@example.com>\n");
    for (key, value) in [("Section", deb.section), ("Priority", deb.priority), ("Depends", deb.depends)] {
        if let Some(value) = value {
            control.push_str(&format!("{key}: {value}\n"));
        }
    }
    control.push_str("Description: tiny test package\n");
    std::fs::write(tree.join("DEBIAN/control"), control).expect("control");
    if let Some(body) = deb.postinst {
        use std::os::unix::fs::PermissionsExt;
        let path = tree.join("DEBIAN/postinst");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("postinst");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::write(tree.join(format!("usr/share/doc/{name}/README")), format!("{name} {version}\n")).expect("file");
    let out = dir.join(format!("{name}_{version}_all.deb"));
    run(Command::new("dpkg-deb").args(["--build", "--root-owner-group"]).arg(&tree).arg(&out));
    out
}

/// An empty dpkg database and apt directories under `root`.
pub fn dpkg_root(root: &Path) {
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "etc/apt/sources.list.d",
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/log/apt",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("dir");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
    std::fs::write(root.join("var/lib/dpkg/available"), "").expect("available");
}

/// Installs `debs` into the dpkg database under `root` with the real dpkg.
pub fn dpkg_install(root: &Path, debs: &[PathBuf]) {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "-i"])
        .args(debs));
}

/// A /bin/sh (this machine's, with the libraries it loads) inside `root`, so that maintainer
/// scripts and scriptlets, which the tools run chrooted into the root, can run.
pub fn shell_in(root: &Path) {
    let sh = std::fs::canonicalize("/bin/sh").expect("/bin/sh");
    let mut files = vec![sh.clone()];
    let ldd = run(Command::new("ldd").arg(&sh));
    files.extend(ldd.split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from));
    for file in &files {
        let target = root.join(file.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("dir");
        std::fs::copy(file, &target).expect("copy");
    }
    std::fs::create_dir_all(root.join("bin")).expect("bin");
    let inside = root.join("bin/sh");
    if !inside.exists() {
        std::os::unix::fs::symlink(&sh, &inside).expect("link /bin/sh");
    }
}

/// An apt root with aa, bb, keep, bad, dd, ee at 1.0-1 and a file:// repository offering:
/// bookworm-security: aa 1.1-1; bookworm: bb 2.0-1 (needs cc), cc, keep 1.0-1 (same), bad
/// 1.1-1 (postinst exits 1), dd 2.0-1, ee 1.5-1.
pub fn sample_apt_root(work: &Path) -> PathBuf {
    let root = work.join("root");
    dpkg_root(&root);
    shell_in(&root);
    let old: Vec<PathBuf> =
        ["aa", "bb", "keep", "bad", "dd", "ee"].iter().map(|n| build_deb(work, &Deb::new(n, "1.0-1"))).collect();
    dpkg_install(&root, &old);
    let security =
        [build_deb(work, &Deb { section: Some("utils"), priority: Some("optional"), ..Deb::new("aa", "1.1-1") })];
    let main = [
        build_deb(
            work,
            &Deb { section: Some("web"), priority: Some("important"), depends: Some("cc"), ..Deb::new("bb", "2.0-1") },
        ),
        build_deb(work, &Deb::new("cc", "1.0-1")),
        build_deb(work, &Deb::new("keep", "1.0-1")),
        build_deb(
            work,
            &Deb { postinst: Some("echo 'bad: failing on purpose' >&2\nexit 1"), ..Deb::new("bad", "1.1-1") },
        ),
        build_deb(work, &Deb { section: Some("libs"), ..Deb::new("dd", "2.0-1") }),
        build_deb(work, &Deb::new("ee", "1.5-1")),
    ];
    let sources = apt_repo(
        &work.join("repo"),
        &[
            Suite { name: "bookworm", origin: "Debian", debs: &main },
            Suite { name: "bookworm-security", origin: "Debian", debs: &security },
        ],
    );
    std::fs::write(root.join("etc/apt/sources.list"), sources).expect("sources");
    root
}

/// A suite of an apt repository.
pub struct Suite<'a> {
    pub name: &'static str,
    pub origin: &'static str,
    pub debs: &'a [PathBuf],
}

/// A file:// apt repository at `dir` with `suites` (component main), indexed with
/// apt-ftparchive; returns the sources.list lines for it.
pub fn apt_repo(dir: &Path, suites: &[Suite<'_>]) -> String {
    let mut lines = String::new();
    for suite in suites {
        let pool = dir.join("pool").join(suite.name);
        std::fs::create_dir_all(&pool).expect("pool");
        for deb in suite.debs {
            std::fs::copy(deb, pool.join(deb.file_name().expect("name"))).expect("copy");
        }
        let binary = dir.join(format!("dists/{}/main/binary-amd64", suite.name));
        std::fs::create_dir_all(&binary).expect("dists");
        let packages =
            run(Command::new("apt-ftparchive").args(["packages", &format!("pool/{}", suite.name)]).current_dir(dir));
        std::fs::write(binary.join("Packages"), packages).expect("Packages");
        let release = run(Command::new("apt-ftparchive")
            .args(["-o", &format!("APT::FTPArchive::Release::Origin={}", suite.origin)])
            .args(["-o", &format!("APT::FTPArchive::Release::Suite={}", suite.name)])
            .args(["-o", &format!("APT::FTPArchive::Release::Codename={}", suite.name)])
            .args(["-o", "APT::FTPArchive::Release::Components=main"])
            .args(["-o", "APT::FTPArchive::Release::Architectures=amd64 all"])
            .args(["release", &format!("dists/{}", suite.name)])
            .current_dir(dir));
        std::fs::write(dir.join(format!("dists/{}/Release", suite.name)), release).expect("Release");
        lines.push_str(&format!("deb [trusted=yes] file:{} {} main\n", dir.display(), suite.name));
    }
    lines
}

/// An .rpm to build.
#[derive(Debug, Clone, Default)]
pub struct Rpm {
    pub name: &'static str,
    pub version: &'static str,
    pub release: &'static str,
    pub requires: Option<&'static str>,
    pub provides: Option<&'static str>,
    /// The body of a `%post` scriptlet.
    pub post: Option<&'static str>,
}

impl Rpm {
    pub fn new(name: &'static str, version: &'static str, release: &'static str) -> Rpm {
        Rpm { name, version, release, ..Rpm::default() }
    }
}

/// Builds `NAME-VERSION-RELEASE.noarch.rpm` in `dir` with rpmbuild.
pub fn build_rpm(dir: &Path, rpm: &Rpm) -> PathBuf {
    let spec = dir.join(format!("{}-{}-{}.spec", rpm.name, rpm.version, rpm.release));
    let mut text = format!(
        "Name: {}\nVersion: {}\nRelease: {}\nSummary: tiny test package\nLicense: MIT\nBuildArch: noarch\n",
        rpm.name, rpm.version, rpm.release
    );
    if let Some(requires) = rpm.requires {
        text.push_str(&format!("Requires: {requires}\n"));
    }
    if let Some(provides) = rpm.provides {
        text.push_str(&format!("Provides: {provides}\n"));
    }
    text.push_str("%description\ntiny\n");
    if let Some(post) = rpm.post {
        text.push_str(&format!("%post\n{post}\n"));
    }
    text.push_str("%files\n");
    std::fs::write(&spec, text).expect("spec");
    let out = dir.join("rpms");
    run(Command::new("rpmbuild")
        .args(["--quiet", "-bb"])
        .arg("--define")
        .arg(format!("_topdir {}", dir.join("rpmbuild").display()))
        .arg("--define")
        .arg(format!("_rpmdir {}", out.display()))
        .arg("--define")
        .arg("_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm")
        .arg(&spec));
    out.join(format!("{}-{}-{}.noarch.rpm", rpm.name, rpm.version, rpm.release))
}

/// A Rocky-like root with an rpm database holding `rpms` (installed with the real rpm).
pub fn rpm_root(root: &Path, rpms: &[PathBuf]) {
    std::fs::create_dir_all(root.join("etc/yum.repos.d")).expect("repos");
    std::fs::write(root.join("etc/os-release"), "NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.3\"\n")
        .expect("os-release");
    run(Command::new("rpm").arg("--root").arg(root).args(["--dbpath", "/var/lib/rpm", "--initdb"]));
    if !rpms.is_empty() {
        run(Command::new("rpm")
            .arg("--root")
            .arg(root)
            .args(["--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--noscripts"])
            .args(rpms));
    }
}

/// A dnf repository at `dir` holding `rpms`, with `updateinfo` (an updateinfo.xml text) added
/// by modifyrepo_c when given.
pub fn dnf_repo(dir: &Path, rpms: &[PathBuf], updateinfo: Option<&str>) {
    std::fs::create_dir_all(dir).expect("repo");
    for rpm in rpms {
        std::fs::copy(rpm, dir.join(rpm.file_name().expect("name"))).expect("copy");
    }
    run(Command::new("createrepo_c").arg("-q").arg(dir));
    if let Some(xml) = updateinfo {
        let file = dir.join("updateinfo.xml");
        std::fs::write(&file, xml).expect("updateinfo");
        run(Command::new("modifyrepo_c").arg("--mdtype=updateinfo").arg(&file).arg(dir.join("repodata")));
    }
}

/// Another process (python3) holding an fcntl write lock on `path`, as dpkg, apt and rpm take
/// theirs; killed when dropped.
pub struct HeldLock(pub Child);

impl HeldLock {
    pub fn hold(path: &Path, seconds: u32) -> HeldLock {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys,time\nf=open(sys.argv[1],'a')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\n\
                 time.sleep(float(sys.argv[2]))",
            ])
            .arg(path)
            .arg(seconds.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "locked");
        HeldLock(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
