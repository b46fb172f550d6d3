//! Synthetic inventories: P Debian packages per node with realistic names and versions, some
//! differing between nodes, plus the node's `InstanceInformation`, encoded and hashed exactly
//! as the real agent does (`serde_json::Value` items, SHA-256 of the JSON array, hex).
//!
//! Every node is Debian 9 so that the OSV sample's Debian advisories (openssl, libxml2, dpkg,
//! tzdata) apply; whether a node has the vulnerable or the fixed version depends on its index,
//! so findings vary across the fleet but are the same on every run.

use flotilla_inventory::{Application, InstanceInformation};
use serde_json::Value;

/// What the simulated nodes say they run (Hello and InstanceInformation).
pub const OS_NAME: &str = "Debian GNU/Linux";
pub const OS_ID: &str = "debian";
pub const OS_VERSION: &str = "9";
pub const KERNEL: &str = "4.9.0-19-amd64";
pub const ARCH: &str = "x86_64";

/// Real Debian 9 packages and versions, the start of every node's list.
const BASE: &[(&str, &str)] = &[
    ("adduser", "3.115"),
    ("apt", "1.4.11"),
    ("base-files", "9.9+deb9u13"),
    ("base-passwd", "3.5.43"),
    ("bash", "4.4-5"),
    ("bsdutils", "1:2.29.2-1+deb9u1"),
    ("ca-certificates", "20200601~deb9u2"),
    ("coreutils", "8.26-3"),
    ("curl", "7.52.1-5+deb9u16"),
    ("dash", "0.5.8-2.4"),
    ("debconf", "1.5.61"),
    ("debian-archive-keyring", "2017.5+deb9u1"),
    ("debianutils", "4.8.1.1"),
    ("diffutils", "1:3.5-3"),
    ("e2fslibs", "1.43.4-2+deb9u2"),
    ("e2fsprogs", "1.43.4-2+deb9u2"),
    ("findutils", "4.6.0+git+20161106-2"),
    ("gcc-6-base", "6.3.0-18+deb9u1"),
    ("gpgv", "2.1.18-8~deb9u4"),
    ("grep", "2.27-2"),
    ("gzip", "1.6-5+deb9u1"),
    ("hostname", "3.18+b1"),
    ("init-system-helpers", "1.48"),
    ("iproute2", "4.9.0-1+deb9u1"),
    ("libacl1", "2.2.52-3+b1"),
    ("libapt-pkg5.0", "1.4.11"),
    ("libattr1", "1:2.4.47-2+b2"),
    ("libaudit1", "1:2.6.7-2"),
    ("libblkid1", "2.29.2-1+deb9u1"),
    ("libbz2-1.0", "1.0.6-8.1"),
    ("libc-bin", "2.24-11+deb9u4"),
    ("libc6", "2.24-11+deb9u4"),
    ("libcap-ng0", "0.7.7-3+b1"),
    ("libcurl3", "7.52.1-5+deb9u16"),
    ("libdb5.3", "5.3.28-12+deb9u1"),
    ("libfdisk1", "2.29.2-1+deb9u1"),
    ("libgcc1", "1:6.3.0-18+deb9u1"),
    ("libgcrypt20", "1.7.6-2+deb9u4"),
    ("libgmp10", "2:6.1.2+dfsg-1"),
    ("libgnutls30", "3.5.8-5+deb9u6"),
    ("libgpg-error0", "1.26-2"),
    ("libidn11", "1.33-1+deb9u1"),
    ("liblz4-1", "0.0~r131-2+deb9u1"),
    ("liblzma5", "5.2.2-1.2+deb9u1"),
    ("libmount1", "2.29.2-1+deb9u1"),
    ("libncursesw5", "6.0+20161126-1+deb9u2"),
    ("libpam-modules", "1.1.8-3.6"),
    ("libpam0g", "1.1.8-3.6"),
    ("libpcre3", "2:8.39-3"),
    ("libselinux1", "2.6-3+b3"),
    ("libsmartcols1", "2.29.2-1+deb9u1"),
    ("libsqlite3-0", "3.16.2-5+deb9u3"),
    ("libss2", "1.43.4-2+deb9u2"),
    ("libssl1.0.2", "1.0.2u-1~deb9u7"),
    ("libstdc++6", "6.3.0-18+deb9u1"),
    ("libsystemd0", "232-25+deb9u14"),
    ("libtinfo5", "6.0+20161126-1+deb9u2"),
    ("libudev1", "232-25+deb9u14"),
    ("libustr-1.0-1", "1.0.4-6"),
    ("libuuid1", "2.29.2-1+deb9u1"),
    ("login", "1:4.4-4.1+deb9u1"),
    ("lsb-base", "9.20161125"),
    ("mawk", "1.3.3-17+b3"),
    ("mount", "2.29.2-1+deb9u1"),
    ("multiarch-support", "2.24-11+deb9u4"),
    ("ncurses-base", "6.0+20161126-1+deb9u2"),
    ("ncurses-bin", "6.0+20161126-1+deb9u2"),
    ("netbase", "5.4"),
    ("openssh-client", "1:7.4p1-10+deb9u7"),
    ("openssh-server", "1:7.4p1-10+deb9u7"),
    ("passwd", "1:4.4-4.1+deb9u1"),
    ("perl-base", "5.24.1-3+deb9u7"),
    ("procps", "2:3.3.12-3+deb9u1"),
    ("sed", "4.4-1"),
    ("sensible-utils", "0.0.9+deb9u1"),
    ("sudo", "1.8.19p1-2.1+deb9u3"),
    ("systemd", "232-25+deb9u14"),
    ("sysvinit-utils", "2.88dsf-59.9"),
    ("tar", "1.29b-1.1+deb9u1"),
    ("util-linux", "2.29.2-1+deb9u1"),
    ("wget", "1.18-5+deb9u3"),
    ("zlib1g", "1:1.2.8.dfsg-5+deb9u1"),
];

/// Packages the OSV sample has Debian 9 advisories for: (name, vulnerable, fixed).
const ADVISED: &[(&str, &str, &str)] = &[
    ("openssl", "1.1.0l-1~deb9u5", "1.1.0l-1~deb9u6"),
    ("libxml2", "2.9.4+dfsg1-2.2+deb9u6", "2.9.4+dfsg1-2.2+deb9u7"),
    ("dpkg", "1.18.25", "1.18.26"),
    ("tzdata", "2021a-0+deb9u3", "2021a-0+deb9u4"),
];

/// Word stems for the synthetic part of a long package list (real Debian prefixes).
const STEMS: &[&str] = &[
    "python3",
    "libperl",
    "libqt5",
    "libgtk",
    "node",
    "ruby",
    "libboost",
    "golang",
    "php7.0",
    "libx11",
    "fonts",
    "texlive",
    "libreoffice",
    "gir1.2",
    "libkf5",
    "r-cran",
    "libghc",
    "librust",
    "haskell",
    "ocaml",
];

fn app(name: String, version: &str) -> Application {
    let (epoch, rest) = match version.split_once(':') {
        Some((e, r)) => (Some(e.to_owned()), r),
        None => (None, version),
    };
    let release = rest.rsplit_once('-').map(|(_, r)| r.to_owned());
    Application {
        source_name: Some(name.clone()),
        source_version: Some(version.to_owned()),
        name,
        version: version.to_owned(),
        release,
        epoch,
        arch: Some("amd64".into()),
        package_manager: "dpkg".into(),
        install_time: Some(1_700_000_000),
    }
}

/// Node `index`'s packages: the advised ones, the base list, then synthetic names up to
/// `count`. About one package in twenty has a node-specific revision, so nodes differ.
pub fn applications(index: usize, count: usize) -> Vec<Application> {
    let mut apps = Vec::with_capacity(count);
    for (i, (name, vulnerable, fixed)) in ADVISED.iter().enumerate() {
        // Node-dependent: about half the nodes carry each vulnerable version.
        let version = if (index + i).is_multiple_of(2) { vulnerable } else { fixed };
        apps.push(app((*name).to_owned(), version));
    }
    for (name, version) in BASE {
        apps.push(app((*name).to_owned(), version));
    }
    let mut j = 0usize;
    while apps.len() < count {
        let stem = STEMS[j % STEMS.len()];
        let name = format!("{stem}-module{}", j / STEMS.len());
        let minor = if (j + index).is_multiple_of(20) { index % 7 + 1 } else { 0 };
        let version = format!("{}.{}.{}-{}+deb9u{minor}", 1 + j % 5, j % 13, j % 7, 1 + j % 3);
        apps.push(app(name, &version));
        j += 1;
    }
    apps.truncate(count);
    apps.sort();
    apps
}

/// Node `index`'s facts as the InstanceInformation item.
pub fn instance_information(hostname: &str) -> InstanceInformation {
    InstanceInformation {
        hostname: hostname.to_owned(),
        os_name: OS_NAME.into(),
        os_version: OS_VERSION.into(),
        os_id: OS_ID.into(),
        kernel: KERNEL.into(),
        arch: ARCH.into(),
        agent_version: concat!("loadgen-", env!("CARGO_PKG_VERSION")).into(),
        addresses: Vec::new(),
        boot_time: Some(1_700_000_000),
    }
}

/// One inventory type as the agent uploads it: name, hex SHA-256, items JSON.
pub struct EncodedType {
    pub name: &'static str,
    pub hash: String,
    pub bytes: Vec<u8>,
}

fn encode<T: serde::Serialize>(name: &'static str, items: impl IntoIterator<Item = T>) -> EncodedType {
    // As the agent: each item through serde_json::Value (sorted keys), then the array.
    let values: Vec<Value> = items.into_iter().filter_map(|i| serde_json::to_value(i).ok()).collect();
    let bytes = serde_json::to_vec(&values).unwrap_or_else(|_| b"[]".to_vec());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    EncodedType { name, hash, bytes }
}

/// The node's whole inventory, encoded.
pub fn encoded(index: usize, hostname: &str, packages: usize) -> Vec<EncodedType> {
    vec![
        encode("Application", applications(index, packages)),
        encode("InstanceInformation", [instance_information(hostname)]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_names_and_difference() {
        let a = applications(0, 1000);
        let b = applications(1, 1000);
        assert_eq!(a.len(), 1000);
        let names: std::collections::BTreeSet<_> = a.iter().map(|p| &p.name).collect();
        assert_eq!(names.len(), 1000, "package names are unique");
        assert_ne!(a, b, "nodes differ");
        assert_eq!(applications(3, 1000), applications(3, 1000), "deterministic");
        assert_eq!(applications(0, 10).len(), 10);
    }

    #[test]
    fn hash_is_stable() {
        let x = encoded(5, "h", 50);
        let y = encoded(5, "h", 50);
        assert_eq!(x[0].hash, y[0].hash);
        assert_eq!(x[0].hash.len(), 64);
    }
}
