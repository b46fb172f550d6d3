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

/// How alike the fleet's nodes are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetShape {
    /// Application items per node (about: variation adds and removes a few).
    pub packages: usize,
    /// Base images the nodes are spread over (node i takes image i mod K); 0: every node its
    /// own image (the all-different fleet).
    pub images: usize,
    /// Share of a node's packages, in percent, that differ from its image: a third at another
    /// version, a third missing, and as many extra packages as a third would be.
    pub vary_percent: f64,
    /// Seeds every choice, so that runs with the same shape are identical.
    pub seed: u64,
}

impl FleetShape {
    /// `packages` per node, 5 images, 3 % variation: the benchmarks' default fleet.
    pub fn realistic(packages: usize) -> Self {
        FleetShape { packages, images: 5, vary_percent: 3.0, seed: 1 }
    }

    /// Every node the same image, no variation.
    pub fn identical(packages: usize) -> Self {
        FleetShape { packages, images: 1, vary_percent: 0.0, seed: 1 }
    }
}

/// A 64-bit mix of the inputs (SplitMix64 finaliser over a running xor): deterministic,
/// well spread, and cheap enough to call per package.
pub fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &p in parts {
        h ^= p;
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

/// Names of the fixed part of every list: the advised packages, then the base system.
const FIXED: usize = ADVISED.len() + BASE.len();

/// The `j`-th name of the canonical package universe: the advised packages, the real Debian
/// 9 base, then synthetic names (`python3-module7`, ...). Images draw their lists from its
/// start and the synthetic advisory database from all of it, so the two overlap as a real
/// fleet and a real distribution's advisories do.
pub fn package_name(j: usize) -> String {
    if j < ADVISED.len() {
        ADVISED[j].0.to_owned()
    } else if j < FIXED {
        BASE[j - ADVISED.len()].0.to_owned()
    } else {
        let k = j - FIXED;
        format!("{}-module{}", STEMS[k % STEMS.len()], k / STEMS.len())
    }
}

/// The synthetic packages' version before an image's security updates: some with an epoch,
/// some with a `~` backport revision (as `1.2.3-1~deb9u2` sorts before `1.2.3-1`).
fn synthetic_base(j: usize) -> (String, String, char) {
    let epoch = if j % 11 == 3 { "1:" } else { "" };
    let sep = if j.is_multiple_of(5) { '~' } else { '+' };
    (epoch.to_owned(), format!("{}.{}.{}-{}", 1 + j % 5, j % 13, j % 7, 1 + j % 3), sep)
}

/// Package `j`'s version in image `image`: the advised packages vulnerable or fixed, the base
/// system as released, synthetic ones at an image-dependent security update `debNuM`.
pub fn image_version(shape: &FleetShape, image: u64, j: usize) -> String {
    let h = mix(&[shape.seed, image, j as u64]);
    if j < ADVISED.len() {
        let (_, vulnerable, fixed) = ADVISED[j];
        return if h.is_multiple_of(2) { vulnerable } else { fixed }.to_owned();
    }
    if j < FIXED {
        return BASE[j - ADVISED.len()].1.to_owned();
    }
    let (epoch, upstream, sep) = synthetic_base(j);
    format!("{epoch}{upstream}{sep}deb9u{}", 1 + h % 4)
}

/// Node `index`'s packages in the `shape` of its fleet, sorted.
pub fn fleet_applications(index: usize, shape: &FleetShape) -> Vec<Application> {
    if shape.images == 0 {
        return applications(index, shape.packages);
    }
    let image = (index % shape.images) as u64;
    let count = shape.packages;
    let share = shape.vary_percent.clamp(0.0, 100.0) / 100.0;
    // A package varies when its hash falls under the share; which way is decided by a second one.
    let threshold = (share * u64::MAX as f64) as u64;
    let mut apps = Vec::with_capacity(count + count / 20);
    for j in 0..count {
        let version = image_version(shape, image, j);
        let h = mix(&[shape.seed, 1 << 40, index as u64, j as u64]);
        if threshold > 0 && h < threshold {
            match h % 3 {
                // A binary rebuild or a newer update than the image's: `+bN` sorts above.
                0 => apps.push(app(package_name(j), &format!("{version}+b{}", 1 + h % 3))),
                1 => {} // removed on this node
                _ => apps.push(app(package_name(j), &version)),
            }
        } else {
            apps.push(app(package_name(j), &version));
        }
    }
    // Extra packages, installed by hand: names beyond the image's list, as many as a third of
    // the varied share.
    let extras = (count as f64 * share / 3.0).round() as usize;
    let mut seen = std::collections::BTreeSet::new();
    for e in 0..extras {
        let j = count + (mix(&[shape.seed, 2 << 40, index as u64, e as u64]) as usize % count.max(1));
        if seen.insert(j) {
            apps.push(app(package_name(j), &image_version(shape, image, j)));
        }
    }
    apps.sort();
    apps
}

/// Node `index`'s packages in the all-different fleet: the advised ones, the base list, then
/// synthetic names up to `count`. About one package in twenty has a node-specific revision.
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

/// What the images carry of canonical package `j`, for writing Debian 9 advisories that
/// fixed it (or not) at versions the fleet really has.
pub(crate) enum Carried {
    /// An advised package: the version that fixes it (images carry it or the one before).
    Advised { fixed: &'static str },
    /// A base-system package at this released version on every image.
    Released(&'static str),
    /// A synthetic package `UPSTREAM{sep}deb9uM` (epoch included), M from 1 to 4 by image.
    Updated { upstream: String, sep: char },
}

impl Carried {
    pub(crate) fn of(j: usize) -> Carried {
        if j < ADVISED.len() {
            Carried::Advised { fixed: ADVISED[j].2 }
        } else if j < FIXED {
            Carried::Released(BASE[j - ADVISED.len()].1)
        } else {
            let (epoch, upstream, sep) = synthetic_base(j);
            Carried::Updated { upstream: format!("{epoch}{upstream}"), sep }
        }
    }

    /// The epoch prefix (`1:`) of the carried version, or "".
    pub(crate) fn epoch(&self) -> &str {
        let v = match self {
            Carried::Advised { fixed } => fixed,
            Carried::Released(v) => v,
            Carried::Updated { upstream, .. } => upstream.as_str(),
        };
        v.find(':').map_or("", |i| &v[..=i])
    }
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
pub fn encoded(index: usize, hostname: &str, shape: &FleetShape) -> Vec<EncodedType> {
    vec![
        encode("Application", fleet_applications(index, shape)),
        encode("InstanceInformation", [instance_information(hostname)]),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

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
    fn images_share_most_packages_and_nodes_vary_a_few() {
        let shape = FleetShape::realistic(1000);
        let names = |v: &[Application]| v.iter().map(|a| (a.name.clone(), a.version.clone())).collect::<BTreeSet<_>>();
        // Nodes 0 and 5 have image 0; node 1 has image 1.
        let (a, b, c) = (
            names(&fleet_applications(0, &shape)),
            names(&fleet_applications(5, &shape)),
            names(&fleet_applications(1, &shape)),
        );
        let same = |x: &BTreeSet<_>, y: &BTreeSet<_>| x.intersection(y).count();
        assert!((950..1000).contains(&same(&a, &b)), "same image: {} in common", same(&a, &b));
        assert!(same(&a, &c) < same(&a, &b), "another image differs more");
        assert!((980..=1020).contains(&a.len()), "{}", a.len());
        let identical = FleetShape::identical(300);
        assert_eq!(fleet_applications(0, &identical), fleet_applications(7, &identical));
        assert_eq!(fleet_applications(3, &shape), fleet_applications(3, &shape), "deterministic");
        let names_only: BTreeSet<_> = fleet_applications(2, &shape).into_iter().map(|a| a.name).collect();
        assert_eq!(names_only.len(), fleet_applications(2, &shape).len(), "one version per name");
    }

    #[test]
    fn hash_is_stable() {
        let x = encoded(5, "h", &FleetShape::realistic(50));
        let y = encoded(5, "h", &FleetShape::realistic(50));
        assert_eq!(x[0].hash, y[0].hash);
        assert_eq!(x[0].hash.len(), 64);
    }
}
